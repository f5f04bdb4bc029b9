using Lamina.Server.Storage;
using Npgsql;

namespace Lamina.Tests.Storage;

public sealed class ClusterStorageTests
{
    [Fact]
    public void A_postgresql_url_becomes_an_npgsql_connection_string()
    {
        Assert.True(PostgresUrl.TryParse("postgresql://lam%40ina:p%3Ass@db.internal:6543/lamina?sslmode=require", out var cs, out _));
        var parsed = new NpgsqlConnectionStringBuilder(cs);
        Assert.Equal("db.internal", parsed.Host);
        Assert.Equal(6543, parsed.Port);
        Assert.Equal("lamina", parsed.Database);
        Assert.Equal("lam@ina", parsed.Username);
        Assert.Equal("p:ss", parsed.Password);
        Assert.Equal(SslMode.Require, parsed.SslMode);

        Assert.True(PostgresUrl.TryParse("postgres://db/x", out cs, out _));
        Assert.Equal(5432, new NpgsqlConnectionStringBuilder(cs).Port);
    }

    [Theory]
    [InlineData("mysql://u@h/db")]
    [InlineData("postgresql://u@h")]
    [InlineData("not a url")]
    [InlineData("postgresql://u@h/db?nosuchoption=1")]
    public void A_bad_url_is_refused_with_what_it_must_be(string url)
    {
        Assert.False(PostgresUrl.TryParse(url, out _, out var error));
        Assert.NotEmpty(error);
    }

    [Fact]
    public void Schema_steps_map_sqlite_type_names_for_postgresql_but_not_inside_comments()
    {
        var ddl = "CREATE TABLE t (a INTEGER NOT NULL, -- INTEGER stays here\n b REAL, c BLOB, d TEXT, interval_ms INTEGER);";
        Assert.Equal(
            "CREATE TABLE t (a BIGINT NOT NULL, -- INTEGER stays here\n b DOUBLE PRECISION, c BYTEA, d TEXT, interval_ms BIGINT);",
            Sql.ForPostgres(ddl));
    }
}
