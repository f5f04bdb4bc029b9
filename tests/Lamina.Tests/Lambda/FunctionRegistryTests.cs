using Lamina.Server.Hosting;
using Lamina.Server.Lambda;
using Lamina.Server.Storage;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;

namespace Lamina.Tests.Lambda;

public sealed class FunctionRegistryTests : IDisposable
{
    private readonly string _dataDirectory = Path.Combine(Path.GetTempPath(), "lamina-registry-" + Guid.NewGuid().ToString("N"));
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2025, 1, 2, 3, 4, 5, TimeSpan.Zero));
    private readonly List<FunctionRegistry> _registries = [];

    public void Dispose()
    {
        foreach (var registry in _registries)
        {
            registry.Dispose();
        }
        SqliteConnection.ClearAllPools();
        if (Directory.Exists(_dataDirectory))
        {
            Directory.Delete(_dataDirectory, recursive: true);
        }
    }

    private (FunctionRegistry Registry, Database Database) CreateSut()
    {
        var database = new Database(Options.Create(new LaminaOptions { DataDirectory = _dataDirectory }));
        database.Initialize();
        var registry = new FunctionRegistry(new LambdaStore(database), _time);
        registry.Load();
        _registries.Add(registry);
        return (registry, database);
    }

    private static FunctionConfig Draft(string name = "fn") => new()
    {
        Name = name,
        Runtime = "python3.12",
        Role = "arn:aws:iam::000000000000:role/r",
        Handler = "app.handler",
        CodeSha256 = Convert.ToBase64String(new byte[32]),
        CodeSize = 10,
        LastModified = default,
        RevisionId = "",
        EnvironmentVariables = new Dictionary<string, string> { ["KEY_ONE"] = "v1" },
    };

    [Fact]
    public async Task CreateAsync_StampsRevisionAndTime_VisibleAndPersisted()
    {
        var (registry, _) = CreateSut();

        var write = await registry.CreateAsync(Draft(), new Dictionary<string, string> { ["team"] = "a" }, CancellationToken.None);

        Assert.Equal(FunctionWriteStatus.Succeeded, write.Status);
        Assert.True(Guid.TryParse(write.Config!.RevisionId, out _));
        Assert.Equal(_time.GetUtcNow(), write.Config.LastModified);
        Assert.True(registry.TryGet("fn", out var found));
        Assert.Same(write.Config, found);

        // A new registry over the same database (a restart) sees the same function and tags.
        var (reloaded, _) = CreateSut();
        Assert.True(reloaded.TryGet("fn", out var loaded));
        Assert.Equal(write.Config.RevisionId, loaded.RevisionId);
        Assert.Equal(write.Config.LastModified, loaded.LastModified);
        Assert.Equal("v1", loaded.EnvironmentVariables["KEY_ONE"]);
        Assert.Equal("a", (await reloaded.GetTagsAsync("fn", CancellationToken.None))["team"]);
    }

    [Fact]
    public async Task CreateAsync_ExistingName_AlreadyExists()
    {
        var (registry, _) = CreateSut();
        await registry.CreateAsync(Draft(), new Dictionary<string, string>(), CancellationToken.None);

        var second = await registry.CreateAsync(Draft() with { Handler = "other.handler" }, new Dictionary<string, string>(), CancellationToken.None);

        Assert.Equal(FunctionWriteStatus.AlreadyExists, second.Status);
        Assert.True(registry.TryGet("fn", out var kept));
        Assert.Equal("app.handler", kept.Handler);
    }

    [Fact]
    public async Task UpdateAsync_NewRevision_RetiresPrevious()
    {
        var (registry, _) = CreateSut();
        var created = (await registry.CreateAsync(Draft(), new Dictionary<string, string>(), CancellationToken.None)).Config!;
        var retired = new List<FunctionConfig>();
        registry.Retired += retired.Add;
        _time.Advance(TimeSpan.FromSeconds(5));

        var write = await registry.UpdateAsync("fn", created.RevisionId, c => c with { MemorySize = 512 }, CancellationToken.None);

        Assert.Equal(FunctionWriteStatus.Succeeded, write.Status);
        Assert.NotEqual(created.RevisionId, write.Config!.RevisionId);
        Assert.Equal(_time.GetUtcNow(), write.Config.LastModified);
        Assert.Equal(512, write.Config.MemorySize);
        Assert.Equal([created], retired);
    }

    [Fact]
    public async Task UpdateAsync_StaleRevision_NothingChanges()
    {
        var (registry, _) = CreateSut();
        var created = (await registry.CreateAsync(Draft(), new Dictionary<string, string>(), CancellationToken.None)).Config!;
        var retired = 0;
        registry.Retired += _ => retired++;

        var write = await registry.UpdateAsync("fn", "not-the-revision", c => c with { MemorySize = 512 }, CancellationToken.None);

        Assert.Equal(FunctionWriteStatus.RevisionMismatch, write.Status);
        Assert.True(registry.TryGet("fn", out var current));
        Assert.Same(created, current);
        Assert.Equal(0, retired);
    }

    [Fact]
    public async Task UpdateAsync_Refused_NothingChanges()
    {
        var (registry, _) = CreateSut();
        var created = (await registry.CreateAsync(Draft(), new Dictionary<string, string>(), CancellationToken.None)).Config!;

        var write = await registry.UpdateAsync("fn", null, _ => null, CancellationToken.None);

        Assert.Equal(FunctionWriteStatus.Refused, write.Status);
        Assert.True(registry.TryGet("fn", out var current));
        Assert.Same(created, current);
    }

    [Fact]
    public async Task UpdateAsync_DatabaseWriteFails_OldStateKept()
    {
        var (registry, database) = CreateSut();
        var created = (await registry.CreateAsync(Draft(), new Dictionary<string, string>(), CancellationToken.None)).Config!;
        await using (var connection = new SqliteConnection($"Data Source={database.FilePath}"))
        {
            connection.Open();
            using var command = connection.CreateCommand();
            command.CommandText = "CREATE TRIGGER no_updates BEFORE UPDATE ON functions BEGIN SELECT RAISE(FAIL, 'disk on fire'); END;";
            command.ExecuteNonQuery();
        }

        await Assert.ThrowsAsync<SqliteException>(() => registry.UpdateAsync("fn", null, c => c with { MemorySize = 512 }, CancellationToken.None));

        Assert.True(registry.TryGet("fn", out var current));
        Assert.Same(created, current);
    }

    [Fact]
    public async Task UpdateAsync_ConcurrentUpdatesWithSameRevision_OnlyOneWins()
    {
        var (registry, _) = CreateSut();
        var created = (await registry.CreateAsync(Draft(), new Dictionary<string, string>(), CancellationToken.None)).Config!;

        var writes = await Task.WhenAll(Enumerable.Range(0, 8).Select(i =>
            registry.UpdateAsync("fn", created.RevisionId, c => c with { Timeout = 10 + i }, CancellationToken.None)));

        Assert.Equal(1, writes.Count(w => w.Status == FunctionWriteStatus.Succeeded));
        Assert.Equal(7, writes.Count(w => w.Status == FunctionWriteStatus.RevisionMismatch));
    }

    [Fact]
    public async Task DeleteAsync_RemovesEverywhere_RetiresLast()
    {
        var (registry, _) = CreateSut();
        var created = (await registry.CreateAsync(Draft(), new Dictionary<string, string> { ["t"] = "v" }, CancellationToken.None)).Config!;
        FunctionConfig? retired = null;
        registry.Retired += c => retired = c;

        Assert.Equal(FunctionWriteStatus.Succeeded, await registry.DeleteAsync("fn", CancellationToken.None));

        Assert.Same(created, retired);
        Assert.False(registry.TryGet("fn", out _));
        Assert.Equal(FunctionWriteStatus.NotFound, await registry.DeleteAsync("fn", CancellationToken.None));
        Assert.Equal(FunctionWriteStatus.NotFound, (await registry.UpdateAsync("fn", null, c => c, CancellationToken.None)).Status);
        var (reloaded, _) = CreateSut();
        Assert.False(reloaded.TryGet("fn", out _));
        Assert.Empty(await reloaded.GetTagsAsync("fn", CancellationToken.None));

        // The name is free again.
        Assert.Equal(FunctionWriteStatus.Succeeded, (await registry.CreateAsync(Draft(), new Dictionary<string, string>(), CancellationToken.None)).Status);
    }

    [Fact]
    public async Task List_SortedOrdinal()
    {
        var (registry, _) = CreateSut();
        foreach (var name in new[] { "b", "a", "B", "c" })
        {
            await registry.CreateAsync(Draft(name), new Dictionary<string, string>(), CancellationToken.None);
        }

        Assert.Equal(["B", "a", "b", "c"], registry.List().Select(c => c.Name));
    }

    [Fact]
    public void Initialize_NewerSchema_RefusesToStart()
    {
        var (_, database) = CreateSut();
        using (var connection = new SqliteConnection($"Data Source={database.FilePath}"))
        {
            connection.Open();
            using var command = connection.CreateCommand();
            command.CommandText = "PRAGMA user_version = 99;";
            command.ExecuteNonQuery();
        }

        var error = Assert.Throws<InvalidOperationException>(database.Initialize);
        Assert.Contains("schema version 99", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task SetReservedConcurrency_PersistsSumsAndIsFreedByDelete()
    {
        var (registry, _) = CreateSut();
        await registry.CreateAsync(Draft("a"), new Dictionary<string, string>(), CancellationToken.None);
        await registry.CreateAsync(Draft("b"), new Dictionary<string, string>(), CancellationToken.None);
        var seenByAllow = -1;

        Assert.Equal(FunctionWriteStatus.Succeeded, await registry.SetReservedConcurrencyAsync("a", 5, _ => true, CancellationToken.None));
        Assert.Equal(FunctionWriteStatus.Succeeded, await registry.SetReservedConcurrencyAsync("b", 7, others => { seenByAllow = others; return true; }, CancellationToken.None));
        Assert.Equal(5, seenByAllow); // the others' reservations, not b's own
        Assert.Equal(FunctionWriteStatus.Refused, await registry.SetReservedConcurrencyAsync("b", 900, _ => false, CancellationToken.None));
        Assert.Equal(FunctionWriteStatus.NotFound, await registry.SetReservedConcurrencyAsync("nope", 1, _ => true, CancellationToken.None));
        Assert.Equal(12, registry.ReservedConcurrencyTotal);

        var (reloaded, _) = CreateSut();
        Assert.True(reloaded.TryGetEntry("b", out var b));
        Assert.Equal(7, b.ReservedConcurrency);
        Assert.Equal(12, reloaded.ReservedConcurrencyTotal);

        string? deleted = null;
        reloaded.Deleted += name => deleted = name;
        await reloaded.DeleteAsync("a", CancellationToken.None);
        Assert.Equal("a", deleted);
        Assert.Equal(7, reloaded.ReservedConcurrencyTotal);
        Assert.Equal(FunctionWriteStatus.Succeeded, await reloaded.SetReservedConcurrencyAsync("b", null, _ => true, CancellationToken.None));
        Assert.Equal(0, reloaded.ReservedConcurrencyTotal);
        Assert.True(reloaded.TryGetEntry("b", out b));
        Assert.Null(b.ReservedConcurrency);
    }
}
