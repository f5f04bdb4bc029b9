using Lamina.Server.Storage;
using Microsoft.Data.Sqlite;

namespace Lamina.Tests.Storage;

public sealed class GroupCommitWriterTests : IDisposable
{
    private readonly string _path = Path.Combine(Path.GetTempPath(), "lamina-groupcommit-" + Guid.NewGuid().ToString("N") + ".db");
    private readonly SqliteConnection _connection;

    public GroupCommitWriterTests()
    {
        _connection = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = _path, Pooling = false }.ToString());
        _connection.Open();
        Execute(_connection, "PRAGMA journal_mode=WAL; CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER NOT NULL);");
    }

    public void Dispose()
    {
        _connection.Dispose();
        foreach (var file in new[] { _path, _path + "-wal", _path + "-shm" })
        {
            File.Delete(file);
        }
    }

    private static void Execute(SqliteConnection connection, string sql)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        command.ExecuteNonQuery();
    }

    private List<string> Keys()
    {
        using var reader = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = _path, Pooling = false }.ToString());
        reader.Open();
        using var command = reader.CreateCommand();
        command.CommandText = "SELECT k FROM t ORDER BY k;";
        using var rows = command.ExecuteReader();
        var keys = new List<string>();
        while (rows.Read())
        {
            keys.Add(rows.GetString(0));
        }
        return keys;
    }

    [Fact]
    public async Task WriteAsync_OneFailsHalfway_OnlyItsChangesAreRolledBack()
    {
        var sut = new GroupCommitWriter(_connection, maxBatch: 16);
        var writes = new List<Task>();
        for (var i = 0; i < 10; i++)
        {
            var key = $"k{i}";
            writes.Add(sut.WriteAsync(scope =>
            {
                Execute(scope.Connection, $"INSERT INTO t VALUES ('{key}', 1);");
                if (key == "k5")
                {
                    Execute(scope.Connection, "INSERT INTO t VALUES ('k5-extra', 1);");
                    throw new InvalidOperationException("refused after writing");
                }
                return 0;
            }));
        }

        var failed = await Assert.ThrowsAsync<InvalidOperationException>(() => writes[5]);
        await Task.WhenAll(writes.Where((_, i) => i != 5));

        Assert.Equal("refused after writing", failed.Message);
        Assert.Equal(["k0", "k1", "k2", "k3", "k4", "k6", "k7", "k8", "k9"], Keys());
        await sut.CompleteAsync();
    }

    [Fact]
    public async Task WriteAsync_AfterCommitActions_RunOnlyForWritesThatCommitted()
    {
        var sut = new GroupCommitWriter(_connection, maxBatch: 16);
        var ran = new List<string>();

        await sut.WriteAsync(scope =>
        {
            Execute(scope.Connection, "INSERT INTO t VALUES ('a', 1);");
            scope.AfterCommit(() => ran.Add("a"));
            return 0;
        });
        await Assert.ThrowsAsync<SqliteException>(() => sut.WriteAsync<int>(scope =>
        {
            scope.AfterCommit(() => ran.Add("duplicate"));
            Execute(scope.Connection, "INSERT INTO t VALUES ('a', 2);"); // primary key violation: this write fails alone
            return 0;
        }));

        Assert.Equal(["a"], ran);
        await sut.CompleteAsync();
    }

    [Fact]
    public async Task WriteAsync_Alone_SeesEverythingQueuedBeforeItAndLaterWritesSeeIt()
    {
        var sut = new GroupCommitWriter(_connection, maxBatch: 16);
        var first = sut.WriteAsync(scope => { Execute(scope.Connection, "INSERT INTO t VALUES ('before', 1);"); return 0; });
        var schema = sut.WriteAsync(scope => { Execute(scope.Connection, "ALTER TABLE t ADD COLUMN extra TEXT;"); return 0; }, alone: true);
        var after = sut.WriteAsync(scope => { Execute(scope.Connection, "INSERT INTO t VALUES ('after', 2, 'x');"); return 0; });

        await Task.WhenAll(first, schema, after);

        Assert.Equal(["after", "before"], Keys());
        await sut.CompleteAsync();
    }

    [Fact]
    public async Task AfterBatch_ToldOfEachCommit()
    {
        var batches = new List<Exception?>();
        var sut = new GroupCommitWriter(_connection, maxBatch: 16, batches.Add);

        await sut.WriteAsync(scope => { Execute(scope.Connection, "INSERT INTO t VALUES ('x', 1);"); return 0; });
        await sut.CompleteAsync();

        Assert.NotEmpty(batches);
        Assert.All(batches, Assert.Null);
    }

    [Fact]
    public async Task WriteAsync_AfterComplete_RefusedNotLost()
    {
        var sut = new GroupCommitWriter(_connection, maxBatch: 16);
        await sut.CompleteAsync();

        await Assert.ThrowsAsync<ObjectDisposedException>(() => sut.WriteAsync(_ => 0));
    }
}
