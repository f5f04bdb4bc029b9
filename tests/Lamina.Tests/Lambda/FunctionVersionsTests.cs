using Lamina.Server.Hosting;
using Lamina.Server.Lambda;
using Lamina.Server.Storage;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;

namespace Lamina.Tests.Lambda;

/// <summary>Versions, aliases, tags and layers in the registries: numbering, preconditions, persistence, retirement.</summary>
public sealed class FunctionVersionsTests : IDisposable
{
    private readonly string _dataDirectory = Path.Combine(Path.GetTempPath(), "lamina-versions-" + Guid.NewGuid().ToString("N"));
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2025, 1, 2, 3, 4, 5, TimeSpan.Zero));
    private readonly List<IDisposable> _disposables = [];

    public void Dispose()
    {
        foreach (var disposable in _disposables)
        {
            disposable.Dispose();
        }
        SqliteConnection.ClearAllPools();
        if (Directory.Exists(_dataDirectory))
        {
            Directory.Delete(_dataDirectory, recursive: true);
        }
    }

    private (FunctionRegistry Functions, LayerRegistry Layers) CreateSut()
    {
        var database = new Database(Options.Create(new LaminaOptions { DataDirectory = _dataDirectory }));
        database.Initialize();
        var functions = new FunctionRegistry(new LambdaStore(database), _time);
        functions.Load();
        var layers = new LayerRegistry(new LambdaStore(database), _time);
        layers.Load();
        _disposables.Add(functions);
        _disposables.Add(layers);
        return (functions, layers);
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
        Layers = [new FunctionLayer("arn:aws:lambda:us-east-1:000000000000:layer:l:1", 5, Convert.ToBase64String(new byte[32]))],
    };

    private static AliasConfig Alias(string version, string? additional = null, double weight = 0) => new()
    {
        Name = "", FunctionVersion = version, AdditionalVersion = additional, AdditionalWeight = weight, RevisionId = "",
    };

    private static async Task<FunctionRegistry> WithFunctionAsync(FunctionRegistry registry)
    {
        await registry.CreateAsync(Draft(), new Dictionary<string, string>(), CancellationToken.None);
        return registry;
    }

    private static Task<FunctionWrite> Publish(FunctionRegistry registry, string? revision = null, string? sha = null, string? description = null) =>
        registry.PublishAsync("fn", revision, sha, description, CancellationToken.None);

    private static Task<FunctionWrite> Touch(FunctionRegistry registry, int memory) =>
        registry.UpdateAsync("fn", null, c => c with { MemorySize = memory }, CancellationToken.None);

    [Fact]
    public async Task PublishAsync_Changes_NumbersOneTwoThree_SnapshotOfLatest()
    {
        var (registry, _) = CreateSut();
        await WithFunctionAsync(registry);

        var first = (await Publish(registry)).Config!;
        await Touch(registry, 256);
        var second = (await Publish(registry, description: "two")).Config!;

        Assert.Equal("1", first.Version);
        Assert.Equal(128, first.MemorySize);
        Assert.Equal("2", second.Version);
        Assert.Equal(256, second.MemorySize);
        Assert.Equal("two", second.Description);
        Assert.Single(second.Layers);
        Assert.True(registry.TryGetEntry("fn", out var entry));
        Assert.Equal("$LATEST", entry.LatestConfig.Version);
        Assert.Same(first, entry.Versions[1].Config);
        Assert.NotEqual(first.RevisionId, entry.LatestConfig.RevisionId);
    }

    [Fact]
    public async Task PublishAsync_NothingChanged_ReturnsNewestVersion()
    {
        var (registry, _) = CreateSut();
        await WithFunctionAsync(registry);

        var first = (await Publish(registry)).Config!;
        var again = await Publish(registry, description: "ignored: nothing changed");

        Assert.Equal(FunctionWriteStatus.Succeeded, again.Status);
        Assert.Same(first, again.Config);
        Assert.True(registry.TryGetEntry("fn", out var entry));
        Assert.Single(entry.Versions);
    }

    [Fact]
    public async Task PublishAsync_AfterDeletingNewest_NumberIsNeverReused()
    {
        var (registry, _) = CreateSut();
        await WithFunctionAsync(registry);
        await Publish(registry);
        await Touch(registry, 256);
        await Publish(registry);

        Assert.Equal(FunctionWriteStatus.Succeeded, (await registry.DeleteVersionAsync("fn", 2, CancellationToken.None)).Status);
        var third = (await Publish(registry)).Config!;

        Assert.Equal("3", third.Version);
        // And after a restart.
        var (reloaded, _) = CreateSut();
        Assert.True(reloaded.TryGetEntry("fn", out var entry));
        Assert.Equal(3, entry.LastVersion);
        Assert.Equal([1, 3], entry.Versions.Keys);
        await reloaded.UpdateAsync("fn", null, c => c with { Timeout = 9 }, CancellationToken.None);
        Assert.Equal("4", (await reloaded.PublishAsync("fn", null, null, null, CancellationToken.None)).Config!.Version);
    }

    [Fact]
    public async Task PublishAsync_Preconditions_RevisionAndCodeSha()
    {
        var (registry, _) = CreateSut();
        await WithFunctionAsync(registry);
        Assert.True(registry.TryGet("fn", out var latest));

        Assert.Equal(FunctionWriteStatus.RevisionMismatch, (await Publish(registry, revision: "other")).Status);
        var mismatch = await Publish(registry, sha: "AAAA");
        Assert.Equal(FunctionWriteStatus.CodeMismatch, mismatch.Status);
        Assert.Same(latest, mismatch.Config);
        Assert.Equal("1", (await Publish(registry, revision: latest.RevisionId, sha: latest.CodeSha256)).Config!.Version);
        Assert.Equal(FunctionWriteStatus.NotFound, (await registry.PublishAsync("nope", null, null, null, CancellationToken.None)).Status);
    }

    [Fact]
    public async Task Versions_PersistedWithTheirOwnConfiguration()
    {
        var (registry, _) = CreateSut();
        await WithFunctionAsync(registry);
        var first = (await Publish(registry)).Config!;
        await Touch(registry, 512);

        var (reloaded, _) = CreateSut();

        Assert.True(reloaded.TryGetEntry("fn", out var entry));
        var loaded = entry.Versions[1].Config;
        Assert.Equal("1", loaded.Version);
        Assert.Equal(128, loaded.MemorySize);
        Assert.Equal(first.RevisionId, loaded.RevisionId);
        Assert.Equal(first.Layers, loaded.Layers);
        Assert.Equal(512, entry.LatestConfig.MemorySize);
        // The version's source revision survives too: publishing the unchanged v1 source is not "unchanged" now.
        Assert.Equal("2", (await reloaded.PublishAsync("fn", null, null, null, CancellationToken.None)).Config!.Version);
    }

    [Fact]
    public async Task ProvisionedConcurrency_Persisted_AndRemovedWithItsVersionAndAlias()
    {
        var (registry, _) = CreateSut();
        await WithFunctionAsync(registry);
        await Publish(registry);
        await Touch(registry, 256);
        await Publish(registry);
        await registry.CreateAliasAsync("fn", "live", _ => Alias("2"), CancellationToken.None);
        var changes = 0;
        registry.ProvisionedConcurrencyChanged += () => changes++;

        Assert.Equal(FunctionWriteStatus.Succeeded, (await registry.SetProvisionedConcurrencyAsync<string>("fn", "1", 3, _ => null, CancellationToken.None)).Status);
        Assert.Equal(FunctionWriteStatus.Succeeded, (await registry.SetProvisionedConcurrencyAsync<string>("fn", "live", 2, _ => null, CancellationToken.None)).Status);
        var refused = await registry.SetProvisionedConcurrencyAsync("fn", "1", 9, _ => "no", CancellationToken.None);
        Assert.Equal((FunctionWriteStatus.Refused, "no"), refused);
        Assert.Equal(2, changes);

        var (reloaded, _) = CreateSut();
        Assert.True(reloaded.TryGetEntry("fn", out var entry));
        Assert.Equal([("1", 3), ("live", 2)], entry.ProvisionedConcurrency.Values.Select(p => (p.Qualifier, p.Requested)));
        Assert.Equal(_time.GetUtcNow(), entry.ProvisionedConcurrency["1"].LastModified);

        await reloaded.DeleteAliasAsync("fn", "live", CancellationToken.None);
        await reloaded.DeleteVersionAsync("fn", 1, CancellationToken.None);
        Assert.True(reloaded.TryGetEntry("fn", out entry));
        Assert.Empty(entry.ProvisionedConcurrency);
        var (again, _) = CreateSut();
        Assert.True(again.TryGetEntry("fn", out entry));
        Assert.Empty(entry.ProvisionedConcurrency);
    }

    [Fact]
    public async Task DeleteVersionAsync_ReferencedByAlias_InUseUntilAliasMoves()
    {
        var (registry, _) = CreateSut();
        await WithFunctionAsync(registry);
        await Publish(registry);
        await Touch(registry, 256);
        await Publish(registry);
        await registry.CreateAliasAsync("fn", "live", _ => Alias("1", "2", 0.3), CancellationToken.None);
        var retired = new List<FunctionConfig>();
        registry.Retired += retired.Add;

        var refused = await registry.DeleteVersionAsync("fn", 2, CancellationToken.None);
        Assert.Equal(FunctionWriteStatus.InUse, refused.Status);
        Assert.Equal(["live"], refused.ReferencingAliases);

        await registry.UpdateAliasAsync("fn", "live", null, (_, a) => a with { AdditionalVersion = null, AdditionalWeight = 0 }, CancellationToken.None);
        Assert.True(registry.TryGetEntry("fn", out var before));
        Assert.Equal(FunctionWriteStatus.Succeeded, (await registry.DeleteVersionAsync("fn", 2, CancellationToken.None)).Status);

        Assert.Same(before.Versions[2].Config, Assert.Single(retired));
        Assert.Equal(FunctionWriteStatus.QualifierNotFound, (await registry.DeleteVersionAsync("fn", 2, CancellationToken.None)).Status);
    }

    [Fact]
    public async Task DeleteAsync_WholeFunction_RetiresLatestAndEveryVersion_RemovesAliases()
    {
        var (registry, _) = CreateSut();
        await WithFunctionAsync(registry);
        await Publish(registry);
        await registry.CreateAliasAsync("fn", "live", _ => Alias("1"), CancellationToken.None);
        var retired = new List<FunctionConfig>();
        registry.Retired += retired.Add;

        Assert.Equal(FunctionWriteStatus.Succeeded, await registry.DeleteAsync("fn", CancellationToken.None));

        Assert.Equal(["$LATEST", "1"], retired.Select(c => c.Version));
        await WithFunctionAsync(registry);
        Assert.True(registry.TryGetEntry("fn", out var recreated));
        Assert.Empty(recreated.Aliases);
        Assert.Equal("1", (await Publish(registry)).Config!.Version); // a new function numbers from 1
        var (reloaded, _) = CreateSut();
        Assert.True(reloaded.TryGetEntry("fn", out var loaded));
        Assert.Empty(loaded.Aliases);
        Assert.Single(loaded.Versions);
    }

    [Fact]
    public async Task Aliases_CreateUpdateDelete_RevisionStampedAndPersisted()
    {
        var (registry, _) = CreateSut();
        await WithFunctionAsync(registry);
        await Publish(registry);

        var created = await registry.CreateAliasAsync("fn", "live", _ => Alias("1") with { Description = "d" }, CancellationToken.None);
        Assert.Equal(FunctionWriteStatus.Succeeded, created.Status);
        Assert.Equal("live", created.Alias!.Name);
        Assert.True(Guid.TryParse(created.Alias.RevisionId, out _));
        Assert.Equal(FunctionWriteStatus.AlreadyExists, (await registry.CreateAliasAsync("fn", "live", _ => Alias("1"), CancellationToken.None)).Status);
        Assert.Equal(FunctionWriteStatus.Refused, (await registry.CreateAliasAsync("fn", "other", _ => null, CancellationToken.None)).Status);

        Assert.Equal(FunctionWriteStatus.RevisionMismatch,
            (await registry.UpdateAliasAsync("fn", "live", "stale", (_, a) => a, CancellationToken.None)).Status);
        var updated = await registry.UpdateAliasAsync("fn", "live", created.Alias.RevisionId, (_, a) => a with { FunctionVersion = "$LATEST" }, CancellationToken.None);
        Assert.Equal("$LATEST", updated.Alias!.FunctionVersion);
        Assert.NotEqual(created.Alias.RevisionId, updated.Alias.RevisionId);

        var (reloaded, _) = CreateSut();
        Assert.True(reloaded.TryGetEntry("fn", out var entry));
        Assert.Equal(updated.Alias, entry.Aliases["live"]);

        Assert.Equal(FunctionWriteStatus.Succeeded, await registry.DeleteAliasAsync("fn", "live", CancellationToken.None));
        Assert.Equal(FunctionWriteStatus.QualifierNotFound, await registry.DeleteAliasAsync("fn", "live", CancellationToken.None));
        Assert.Equal(FunctionWriteStatus.NotFound, await registry.DeleteAliasAsync("nope", "live", CancellationToken.None));
    }

    [Fact]
    public async Task Tags_MergeRemoveAndLimit()
    {
        var (registry, _) = CreateSut();
        await registry.CreateAsync(Draft(), new Dictionary<string, string> { ["a"] = "1" }, CancellationToken.None);

        Assert.Equal(FunctionWriteStatus.Succeeded, await registry.TagAsync("fn", new Dictionary<string, string> { ["a"] = "2", ["b"] = "3" }, 50, CancellationToken.None));
        Assert.Equal(new Dictionary<string, string> { ["a"] = "2", ["b"] = "3" }, await registry.GetTagsAsync("fn", CancellationToken.None));
        Assert.Equal(FunctionWriteStatus.Refused, await registry.TagAsync("fn", new Dictionary<string, string> { ["c"] = "4" }, 2, CancellationToken.None));
        Assert.Equal(FunctionWriteStatus.Succeeded, await registry.TagAsync("fn", new Dictionary<string, string> { ["b"] = "5" }, 2, CancellationToken.None));
        Assert.Equal(FunctionWriteStatus.Succeeded, await registry.UntagAsync("fn", ["a", "zz"], CancellationToken.None));
        Assert.Equal(new Dictionary<string, string> { ["b"] = "5" }, await registry.GetTagsAsync("fn", CancellationToken.None));
        Assert.Equal(FunctionWriteStatus.NotFound, await registry.TagAsync("nope", new Dictionary<string, string> { ["a"] = "1" }, 50, CancellationToken.None));
    }

    [Fact]
    public async Task Initialize_SchemaVersion1_MigratesKeepingFunctionsAndTags()
    {
        // A database written by the server before issue #4: schema 1, one function with a tag.
        Directory.CreateDirectory(_dataDirectory);
        var json = System.Text.Json.JsonSerializer.Serialize(StoredFunctionConfig.From(Draft() with { Layers = [], RevisionId = "r1" }),
            Lamina.Server.Protocols.LaminaJsonContext.Default.StoredFunctionConfig);
        await using (var connection = new SqliteConnection($"Data Source={Path.Combine(_dataDirectory, "lamina.db")}"))
        {
            connection.Open();
            await using var command = connection.CreateCommand();
            command.CommandText = """
                CREATE TABLE functions (name TEXT NOT NULL PRIMARY KEY, revision_id TEXT NOT NULL, code_sha256 TEXT NOT NULL,
                    config_json TEXT NOT NULL, created_at TEXT NOT NULL, modified_at TEXT NOT NULL);
                CREATE TABLE function_tags (function_name TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
                    key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (function_name, key));
                INSERT INTO functions VALUES ('fn', 'r1', 'sha', $json, 'now', 'now');
                INSERT INTO function_tags VALUES ('fn', 'team', 'a');
                PRAGMA user_version = 1;
                """;
            command.Parameters.AddWithValue("$json", json);
            await command.ExecuteNonQueryAsync();
        }

        var (registry, _) = CreateSut();

        Assert.True(registry.TryGetEntry("fn", out var entry));
        Assert.Equal("r1", entry.LatestConfig.RevisionId);
        Assert.Empty(entry.LatestConfig.Layers);
        Assert.Equal(0, entry.LastVersion);
        Assert.Equal("a", (await registry.GetTagsAsync("fn", CancellationToken.None))["team"]);
        Assert.Equal("1", (await Publish(registry)).Config!.Version);
    }

    [Fact]
    public async Task Layers_NumberedPerName_NeverReused_Persisted()
    {
        var (_, layers) = CreateSut();
        LayerVersion Draft(string name) => new()
        {
            LayerName = name, Version = 0, CodeSha256 = Convert.ToBase64String(new byte[32]), CodeSize = 3, CreatedDate = default,
            CompatibleRuntimes = ["python3.12"],
        };

        Assert.Equal(1, (await layers.PublishAsync(Draft("a"), CancellationToken.None)).Version);
        Assert.Equal(2, (await layers.PublishAsync(Draft("a"), CancellationToken.None)).Version);
        Assert.Equal(1, (await layers.PublishAsync(Draft("b"), CancellationToken.None)).Version);
        Assert.True(await layers.DeleteAsync("a", 2, CancellationToken.None));
        Assert.False(await layers.DeleteAsync("a", 2, CancellationToken.None));
        Assert.True(await layers.DeleteAsync("a", 1, CancellationToken.None));

        var (_, reloaded) = CreateSut();
        Assert.Equal(3, (await reloaded.PublishAsync(Draft("a"), CancellationToken.None)).Version);
        Assert.True(reloaded.TryGet("b", 1, out var b));
        Assert.Equal(["python3.12"], b.CompatibleRuntimes!);
        Assert.Equal(_time.GetUtcNow(), b.CreatedDate);
        Assert.Equal(["a", "b"], reloaded.List().Select(l => l.Name));
    }
}
