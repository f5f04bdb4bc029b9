using Lamina.Server.Storage;
using Microsoft.Data.Sqlite;
using Npgsql;

namespace Lamina.Tests.Storage;

public sealed class SqlTests
{
    [Fact]
    public void A_nul_becomes_the_replacement_character_for_postgres_only()
    {
        Assert.Equal("a\uFFFDb", Sql.PostgresValue("a\0b"));
        var plain = "ab";
        Assert.Same(plain, Sql.PostgresValue(plain));
        Assert.Equal(42L, Sql.PostgresValue(42L));
        Assert.Null(Sql.PostgresValue(null));

        using var postgres = new NpgsqlCommand();
        Assert.Equal("a\uFFFDb", postgres.Add("@v", "a\0b").Value);
        using var sqlite = new SqliteCommand();
        Assert.Equal("a\0b", sqlite.Add("@v", "a\0b").Value);
    }

    [Fact]
    public void Unavailable_means_the_database_not_the_statement()
    {
        Assert.True(Sql.IsUnavailable(new NpgsqlException("Exception while reading from stream", new IOException("reset"))));
        Assert.True(Sql.IsUnavailable(new SqliteException("database is locked", 5)));
        // A full disk is not a reason to tell a caller to retry, but the server's own writes wait for space.
        Assert.False(Sql.IsUnavailable(new SqliteException("database or disk is full", 13)));
        Assert.True(Sql.CanRetryLater(new SqliteException("database or disk is full", 13)));
        Assert.True(Sql.CanRetryLater(new SqliteException("database is locked", 5)));
        Assert.False(Sql.IsUnavailable(new SqliteException("UNIQUE constraint failed", 19)));
        Assert.False(Sql.IsUnavailable(new IOException("a caller's connection")));
        var unwrapped = Assert.ThrowsAny<Exception>(() => new NpgsqlConnection("Host=127.0.0.1;Port=1;Timeout=1").Open());
        Assert.True(Sql.IsUnavailable(unwrapped), unwrapped.ToString());
        Assert.False(Sql.IsUnavailable(new InvalidOperationException()));
    }
}
