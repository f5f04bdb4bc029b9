using System.Text.Json;
using Lamina.Server.Security;

namespace Lamina.Server.Hosting;

/// <summary>
/// <c>lamina keys create | list | revoke</c>: access keys under the data directory. Once one exists, the server requires
/// every request to be signed by an active key; a revocation takes effect within a second, without a restart.
/// </summary>
internal static class KeysCommand
{
    public const string Usage = """
        usage: lamina keys create [--data DIR] [--account ID]   prints {"AccessKeyId": …, "SecretAccessKey": …} (shown once)
               lamina keys list   [--data DIR]                  ids, accounts, creation and revocation times (no secrets)
               lamina keys revoke ID [--data DIR]
          --data   the server's data directory (default ~/.lamina)
        """;

    public static int Run(string[] args)
    {
        if (args.Length == 0 || args[0] is "help" or "--help" or "-h")
        {
            Console.WriteLine(Usage);
            return args.Length == 0 ? 2 : 0;
        }
        var defaults = new LaminaOptions();
        var data = defaults.DataDirectory;
        var account = defaults.AccountId;
        string? id = null;
        for (var i = 1; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--data" when i + 1 < args.Length:
                    data = Path.GetFullPath(args[++i]);
                    break;
                case "--account" when i + 1 < args.Length && args[0] == "create":
                    account = args[++i];
                    if (account.Length != 12 || !account.All(char.IsAsciiDigit))
                    {
                        Console.Error.WriteLine($"lamina keys: --account must be 12 digits, not '{account}'");
                        return 2;
                    }
                    break;
                case var value when !value.StartsWith('-') && id is null && args[0] == "revoke":
                    id = value;
                    break;
                default:
                    Console.Error.WriteLine($"lamina keys: unexpected '{args[i]}'\n{Usage}");
                    return 2;
            }
        }

        using var connection = AccessKeys.Open(AccessKeys.PathIn(data));
        var now = TimeProvider.System.GetUtcNow();
        using var output = new MemoryStream();
        using (var w = new Utf8JsonWriter(output, new JsonWriterOptions { Indented = true }))
        {
            switch (args[0])
            {
                case "create":
                    var key = AccessKeys.Create(connection, account, now);
                    w.WriteStartObject();
                    w.WriteString("AccessKeyId", key.AccessKeyId);
                    w.WriteString("SecretAccessKey", key.SecretAccessKey);
                    w.WriteString("AccountId", key.AccountId);
                    w.WriteEndObject();
                    break;
                case "list":
                    w.WriteStartObject();
                    w.WriteStartArray("AccessKeys");
                    foreach (var (keyId, keyAccount, created, revoked) in AccessKeys.List(connection))
                    {
                        w.WriteStartObject();
                        w.WriteString("AccessKeyId", keyId);
                        w.WriteString("AccountId", keyAccount);
                        w.WriteString("Created", created);
                        w.WriteString("Status", revoked is null ? "Active" : "Revoked");
                        if (revoked is not null)
                        {
                            w.WriteString("Revoked", revoked);
                        }
                        w.WriteEndObject();
                    }
                    w.WriteEndArray();
                    w.WriteEndObject();
                    break;
                case "revoke" when id is not null:
                    if (!AccessKeys.Revoke(connection, id, now))
                    {
                        Console.Error.WriteLine($"lamina keys: no active key {id}");
                        return 1;
                    }
                    w.WriteStartObject();
                    w.WriteString("AccessKeyId", id);
                    w.WriteString("Status", "Revoked");
                    w.WriteEndObject();
                    break;
                default:
                    Console.Error.WriteLine($"lamina keys: unknown command '{args[0]}'{(args[0] == "revoke" ? " (revoke needs an ID)" : "")}\n{Usage}");
                    return 2;
            }
        }
        Console.WriteLine(System.Text.Encoding.UTF8.GetString(output.ToArray()));
        return 0;
    }
}
