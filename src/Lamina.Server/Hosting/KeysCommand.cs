using System.CommandLine;
using System.Data.Common;
using System.Text.Json;
using Lamina.Server.Security;
using Lamina.Server.Storage;

namespace Lamina.Server.Hosting;

/// <summary>
/// <c>lamina keys create | list | revoke</c>: access keys under the data directory, or a cluster's with <c>--database</c>.
/// Once one exists, the server requires every request to be signed by an active key; a revocation takes effect within
/// a second, without a restart.
/// </summary>
internal static class KeysCommand
{
    public static Command Build()
    {
        var createData = CommandLine.DataOption("The server's data directory");
        var createDatabase = ClusterOption();
        var account = new Option<string>("--account")
        {
            Description = "The account the key belongs to (12 digits)",
            HelpName = "id",
            DefaultValueFactory = _ => new LaminaOptions().AccountId,
            CustomParser = r => CommandLine.Single(r) is { Length: 12 } id && id.All(char.IsAsciiDigit)
                ? id
                : CommandLine.Fail<string>(r, $"--account must be 12 digits, not '{CommandLine.Single(r)}'"),
        };
        var create = new Command("create", "Create a key: prints {\"AccessKeyId\", \"SecretAccessKey\", \"AccountId\"} (the secret is shown once)") { createData, createDatabase, account };
        create.SetAction(r => Print(r.GetValue(createData)!, r.GetValue(createDatabase), (connection, now, w) =>
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
        var listDatabase = ClusterOption();
        var list = new Command("list", "Ids, accounts, creation and revocation times (no secrets)") { listData, listDatabase };
        list.SetAction(r => Print(r.GetValue(listData)!, r.GetValue(listDatabase), (connection, _, w) =>
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
        var revokeDatabase = ClusterOption();
        var id = new Argument<string>("id") { Description = "The access key id to revoke" };
        var revoke = new Command("revoke", "Revoke a key: requests it signs are refused within a second") { id, revokeData, revokeDatabase };
        revoke.SetAction(r => Print(r.GetValue(revokeData)!, r.GetValue(revokeDatabase), (connection, now, w) =>
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

    private static Option<string?> ClusterOption() =>
        CommandLine.DatabaseOption("A cluster's PostgreSQL database (also $LAMINA_DATABASE): its keys, which every node uses");

    // Opens the keys file (or the cluster's database, its schema made or migrated first: no node may have run yet), lets
    // the verb write its JSON, prints it when the verb succeeded.
    private static int Print(string dataDirectory, string? cluster, Func<DbConnection, DateTimeOffset, Utf8JsonWriter, int> verb)
    {
        using DbConnection connection = cluster is null ? AccessKeys.Open(AccessKeys.PathIn(dataDirectory)) : OpenCluster(dataDirectory, cluster);
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

    // The data source lives as long as the command (one verb, then the process ends).
    private static Npgsql.NpgsqlConnection OpenCluster(string dataDirectory, string url)
    {
        var database = new Database(Microsoft.Extensions.Options.Options.Create(new LaminaOptions { DataDirectory = dataDirectory, Database = url }));
        database.InitializeCluster();
        return database.Postgres!.OpenConnection();
    }
}
