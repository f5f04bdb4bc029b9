using System.Text;
using Lamina.Server.Hosting;
using Lamina.Server.Lambda;
using Lamina.Server.Protocols;
using Lamina.Server.Storage;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;
using static Lamina.Tests.Lambda.TestZips;

namespace Lamina.Tests.Lambda;

/// <summary>Layer merging into /opt (later wins, hard links, shared trees), layer resolution and the combined size limit.</summary>
public sealed class LayerTests : IDisposable
{
    private const string Arn = "arn:aws:lambda:us-east-1:000000000000:layer:";
    private readonly string _dataDirectory = Path.Combine(Path.GetTempPath(), "lamina-layers-" + Guid.NewGuid().ToString("N"));
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2025, 1, 2, 3, 4, 5, TimeSpan.Zero));
    private readonly LaminaOptions _options;
    private readonly List<IDisposable> _disposables = [];

    public LayerTests() => _options = new LaminaOptions { DataDirectory = _dataDirectory };

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

    private CodeStore CreateStore(long unzippedLimit = CodeStore.MaxUnzippedBytes)
    {
        var store = new CodeStore(Options.Create(_options), _time) { UnzippedLimit = unzippedLimit };
        store.Initialize();
        store.InitializeOpt();
        return store;
    }

    private LayerRegistry CreateRegistry()
    {
        var database = new Database(Options.Create(_options));
        database.Initialize();
        var registry = new LayerRegistry(new LambdaStore(database), _time);
        registry.Load();
        _disposables.Add(registry);
        return registry;
    }

    private static byte[] Bytes(string text) => Encoding.UTF8.GetBytes(text);

    private static async Task<FunctionLayer> StoreLayerAsync(CodeStore store, string name, params Entry[] entries)
    {
        var code = (await store.StoreAsync(Build(entries), CancellationToken.None)).Code!;
        return new FunctionLayer(Arn + name + ":1", code.Size, code.Sha256);
    }

    private static FunctionConfig Config(params FunctionLayer[] layers) => new()
    {
        Name = "fn", Runtime = "python3.12", Role = "arn:aws:iam::000000000000:role/r", Handler = "app.handler",
        CodeSha256 = Convert.ToBase64String(new byte[32]), CodeSize = 1, LastModified = default, RevisionId = "r", Layers = layers,
    };

    [Fact]
    public async Task GetOptDirectory_SeveralLayers_MergedInOrderLaterWins()
    {
        var store = CreateStore();
        var first = await StoreLayerAsync(store, "a",
            new Entry("python/shared.py", Bytes("first")), new Entry("python/only_first.py", Bytes("1")),
            new Entry("bin/tool", Bytes("file in first"), RegularFile | 0b111_101_101), new Entry("conflict", Bytes("a file")));
        var second = await StoreLayerAsync(store, "b",
            new Entry("python/shared.py", Bytes("second")), new Entry("bin/tool/inner", Bytes("dir in second")),
            new Entry("conflict/x", Bytes("now a dir")));
        var third = await StoreLayerAsync(store, "c", new Entry("conflict", Bytes("a file again")), new Entry("bootstrap", Bytes("#!/bin/sh"), RegularFile | 0b111_101_101));

        var opt = store.GetOptDirectory(Config(first, second, third))!;

        Assert.StartsWith(store.OptRoot, opt, StringComparison.Ordinal);
        Assert.Equal("second", File.ReadAllText(Path.Combine(opt, "python/shared.py")));
        Assert.Equal("1", File.ReadAllText(Path.Combine(opt, "python/only_first.py")));
        Assert.Equal("dir in second", File.ReadAllText(Path.Combine(opt, "bin/tool/inner")));
        Assert.Equal("a file again", File.ReadAllText(Path.Combine(opt, "conflict")));
        Assert.True((File.GetUnixFileMode(Path.Combine(opt, "bootstrap")) & UnixFileMode.UserExecute) != 0);
        // The reverse order gives the other answer, in another tree.
        var reversed = store.GetOptDirectory(Config(second, first))!;
        Assert.NotEqual(opt, reversed);
        Assert.Equal("first", File.ReadAllText(Path.Combine(reversed, "python/shared.py")));
        Assert.Equal("file in first", File.ReadAllText(Path.Combine(reversed, "bin/tool")));
        Assert.Empty(Directory.GetDirectories(store.OptRoot, "tmp-*"));
    }

    [Fact]
    public async Task GetOptDirectory_SameList_OneSharedTree_HardLinkedToTheCodeStore()
    {
        var store = CreateStore();
        var first = await StoreLayerAsync(store, "a", new Entry("lib/a.txt", Bytes("a")));
        var second = await StoreLayerAsync(store, "b", new Entry("lib/b.txt", Bytes("b")));

        var opt = store.GetOptDirectory(Config(first, second))!;
        var again = CreateStore().GetOptDirectory(Config(first, second) with { Name = "other" });

        Assert.Equal(opt, again);
        Assert.Single(Directory.GetDirectories(store.OptRoot));
        // A hard link to the extracted layer file (no bytes copied): a change to one shows through the other.
        File.AppendAllText(Path.Combine(store.Root, first.CodeHashHex, "lib/a.txt"), "+");
        Assert.Equal("a+", File.ReadAllText(Path.Combine(opt, "lib/a.txt")));
    }

    [Fact]
    public async Task GetOptDirectory_NoneOrOneLayer_NullOrTheLayersOwnTree()
    {
        var store = CreateStore();
        var only = await StoreLayerAsync(store, "a", new Entry("python/m.py", Bytes("x")));

        Assert.Null(store.GetOptDirectory(Config()));
        Assert.Equal(Path.Combine(store.Root, only.CodeHashHex), store.GetOptDirectory(Config(only)));
    }

    [Fact]
    public async Task EnsureLayersAsync_TreeRemovedByHand_RebuiltFromZip()
    {
        var store = CreateStore();
        var first = await StoreLayerAsync(store, "a", new Entry("a.txt", Bytes("a")));
        var second = await StoreLayerAsync(store, "b", new Entry("b.txt", Bytes("b")));
        Directory.Delete(Path.Combine(store.Root, first.CodeHashHex), recursive: true);

        Assert.Null(await store.EnsureLayersAsync([first, second], CancellationToken.None));

        var opt = CreateStore().GetOptDirectory(Config(first, second))!;
        Assert.True(File.Exists(Path.Combine(opt, "a.txt")));
    }

    [Fact]
    public async Task ValidateUnzippedTotal_CodePlusLayersOverLimit_Refused()
    {
        var store = CreateStore(unzippedLimit: 1000);
        var code = (await store.StoreAsync(Build(new Entry("app.py", new byte[600])), CancellationToken.None)).Code!;
        var small = await StoreLayerAsync(store, "a", new Entry("a.bin", new byte[300]));
        var big = await StoreLayerAsync(store, "b", new Entry("b.bin", new byte[300]));

        Assert.Null(FunctionValidation.ValidateUnzippedTotal(code.HashHex, [small], store));
        var error = FunctionValidation.ValidateUnzippedTotal(code.HashHex, [small, big], store);

        Assert.Equal("Function code combined with layers exceeds the maximum allowed size of 1000 bytes. The actual size is 1200 bytes.", error!.Message);
    }

    [Fact]
    public async Task ResolveLayers_LambdasRules()
    {
        var registry = CreateRegistry();
        var sha = Convert.ToBase64String(new byte[32]);
        foreach (var name in new[] { "a", "a", "b", "c", "d", "e", "f" })
        {
            await registry.PublishAsync(new LayerVersion { LayerName = name, Version = 0, CodeSha256 = sha, CodeSize = 7, CreatedDate = default }, CancellationToken.None);
        }
        AwsError? Resolve(params string[] arns) => FunctionValidation.ResolveLayers([.. arns], registry, _options, out _);

        Assert.Null(FunctionValidation.ResolveLayers([Arn + "b:1", Arn + "a:2"], registry, _options, out var resolved));
        Assert.Equal([Arn + "b:1", Arn + "a:2"], resolved.Select(l => l.Arn));
        Assert.Equal(7, resolved[0].CodeSize);

        Assert.Equal("Cannot reference more than 5 layers.", Resolve(Arn + "a:1", Arn + "b:1", Arn + "c:1", Arn + "d:1", Arn + "e:1", Arn + "f:1")!.Message);
        Assert.Equal($"Layer version {Arn}a:3 does not exist.", Resolve(Arn + "a:3")!.Message);
        Assert.Equal("arn:aws:lambda:us-east-1:111111111111:layer:a:1".Replace("arn", "Layer version arn", StringComparison.Ordinal) + " does not exist.",
            Resolve("arn:aws:lambda:us-east-1:111111111111:layer:a:1")!.Message);
        Assert.StartsWith("Two different versions of the same layer are not allowed", Resolve(Arn + "a:1", Arn + "a:2")!.Message, StringComparison.Ordinal);
        Assert.StartsWith("Layers are not in the same region", Resolve("arn:aws:lambda:eu-west-1:000000000000:layer:a:1")!.Message, StringComparison.Ordinal);
        Assert.Equal("ValidationException", Resolve(Arn + "a")!.Code);
        Assert.Equal("ValidationException", Resolve("not-an-arn")!.Code);
    }

    [Fact]
    public async Task DeletedLayerVersion_FunctionsKeepItsFiles()
    {
        var store = CreateStore();
        var registry = CreateRegistry();
        var layer = await StoreLayerAsync(store, "a", new Entry("python/m.py", Bytes("x")));
        var second = await StoreLayerAsync(store, "b", new Entry("python/n.py", Bytes("y")));
        await registry.PublishAsync(new LayerVersion { LayerName = "a", Version = 0, CodeSha256 = layer.CodeSha256, CodeSize = layer.CodeSize, CreatedDate = default }, CancellationToken.None);

        Assert.True(await registry.DeleteAsync("a", 1, CancellationToken.None));

        Assert.False(registry.TryGet("a", 1, out _));
        var opt = store.GetOptDirectory(Config(layer, second))!;
        Assert.True(File.Exists(Path.Combine(opt, "python/m.py")));
    }
}
