using System.CommandLine;
using System.Text.Json;
using Lamina.Server.Security;

namespace Lamina.Server.Hosting;

/// <summary>
/// <c>lamina keys create | list | revoke</c>: access keys under the data directory. Once one exists, the server requires
/// every request to be signed by an active key; a revocation takes effect within a second, without a restart.
/// </summary>
internal static class KeysCommand
{
    public static Command Build()
    {
        var createData = CommandLine.DataOption("The server's data directory");
        var account = new Option<string>("--account")
        {
            Description = "The account the key belongs to (12 digits)",
            HelpName = "id",
            DefaultValueFactory = _ => new LaminaOptions().AccountId,
            CustomParser = r => CommandLine.Single(r) is { Length: 12 } id && id.All(char.IsAsciiDigit)
                ? id
                : CommandLine.Fail<string>(r, $"--account must be 12 digits, not '{CommandLine.Single(r)}'"),
        };
        var create = new Command("create", "Create a key: prints {\"AccessKeyId\", \"SecretAccessKey\", \"AccountId\"} (the secret is shown once)") { createData, account };
        create.SetAction(r => Print(r.GetValue(createData)!, (connection, now, w) =>
        {
            var key = AccessKeys.Create(connection, r.GetValue(account)!, now);
            w.WriteStartObject();
            w.WriteString("AccessKeyId", key.AccessKeyId);
            w.WriteString("SecretAccessKey", key.SecretAccessKey);
            w.WriteString("AccountId", key.AccountId);
            w.WriteEndObject();
            return 0;
        }));

        var listData = CommandLine.DataOption("The server's data directory");
        var list = new Command("list", "Ids, accounts, creation and revocation times (no secrets)") { listData };
        list.SetAction(r => Print(r.GetValue(listData)!, (connection, _, w) =>
        {
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
            return 0;
        }));

        var revokeData = CommandLine.DataOption("The server's data directory");
        var id = new Argument<string>("id") { Description = "The access key id to revoke" };
        var revoke = new Command("revoke", "Revoke a key: requests it signs are refused within a second") { id, revokeData };
        revoke.SetAction(r => Print(r.GetValue(revokeData)!, (connection, now, w) =>
        {
            var keyId = r.GetValue(id)!;
            if (!AccessKeys.Revoke(connection, keyId, now))
            {
                Console.Error.WriteLine($"lamina keys: no active key {keyId}");
                return 1;
            }
            w.WriteStartObject();
            w.WriteString("AccessKeyId", keyId);
            w.WriteString("Status", "Revoked");
            w.WriteEndObject();
            return 0;
        }));

        return new Command("keys", "Create, list and revoke access keys (once one exists, every request must be signed)") { create, list, revoke };
    }

    // Opens the keys file, lets the verb write its JSON, prints it when the verb succeeded.
    private static int Print(string dataDirectory, Func<Microsoft.Data.Sqlite.SqliteConnection, DateTimeOffset, Utf8JsonWriter, int> verb)
    {
        using var connection = AccessKeys.Open(AccessKeys.PathIn(dataDirectory));
        using var output = new MemoryStream();
        int status;
        using (var w = new Utf8JsonWriter(output, new JsonWriterOptions { Indented = true }))
        {
            status = verb(connection, TimeProvider.System.GetUtcNow(), w);
        }
        if (status == 0)
        {
            Console.WriteLine(System.Text.Encoding.UTF8.GetString(output.ToArray()));
        }
        return status;
    }
}
