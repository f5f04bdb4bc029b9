using System.Globalization;
using Npgsql;

namespace Lamina.Server.Storage;

/// <summary>
/// <c>postgresql://user:pass@host:port/db?opt=value</c> (libpq's URL form, as operators write it) → an Npgsql
/// connection string. Query options are Npgsql's keywords (<c>sslmode=require</c>, <c>pooling=false</c>, …).
/// </summary>
internal static class PostgresUrl
{
    public static bool TryParse(string url, out string connectionString, out string error)
    {
        connectionString = "";
        if (!Uri.TryCreate(url, UriKind.Absolute, out var uri) || uri.Scheme is not ("postgresql" or "postgres"))
        {
            error = $"must be a URL like postgresql://user:pass@host:5432/db, not '{url}'";
            return false;
        }
        var database = Uri.UnescapeDataString(uri.AbsolutePath.TrimStart('/'));
        if (uri.Host.Length == 0 || database.Length == 0)
        {
            error = $"needs a host and a database name (postgresql://user:pass@host:5432/db), not '{url}'";
            return false;
        }
        var builder = new NpgsqlConnectionStringBuilder
        {
            Host = uri.Host,
            Port = uri.IsDefaultPort || uri.Port < 0 ? 5432 : uri.Port,
            Database = database,
            // Control-plane and queue statements are short. A node waits at most this long to open a connection or for
            // a pooled one, and at most CommandTimeout for a statement's answer: a database that stopped answering
            // (a partition, a stalled disk) is answered as unavailable within seconds, not held for Npgsql's 15 + 30 s.
            Timeout = 5,
            CommandTimeout = 10,
            // Lamina's own: shows in pg_stat_activity, so operators see which connections are whose.
            ApplicationName = "lamina",
        };
        if (uri.UserInfo.Length > 0)
        {
            var colon = uri.UserInfo.IndexOf(':', StringComparison.Ordinal);
            builder.Username = Uri.UnescapeDataString(colon < 0 ? uri.UserInfo : uri.UserInfo[..colon]);
            if (colon >= 0)
            {
                builder.Password = Uri.UnescapeDataString(uri.UserInfo[(colon + 1)..]);
            }
        }
        foreach (var pair in uri.Query.TrimStart('?').Split('&', StringSplitOptions.RemoveEmptyEntries))
        {
            var eq = pair.IndexOf('=', StringComparison.Ordinal);
            var key = Uri.UnescapeDataString(eq < 0 ? pair : pair[..eq]);
            var value = eq < 0 ? "" : Uri.UnescapeDataString(pair[(eq + 1)..]);
            try
            {
                builder[key] = value;
            }
            catch (ArgumentException e)
            {
                error = string.Create(CultureInfo.InvariantCulture, $"option '{key}' is not one Npgsql knows ({e.Message})");
                return false;
            }
        }
        connectionString = builder.ConnectionString;
        error = "";
        return true;
    }
}
