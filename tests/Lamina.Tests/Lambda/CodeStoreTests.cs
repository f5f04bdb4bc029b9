using System.Security.Cryptography;
using Lamina.Server.Hosting;
using Lamina.Server.Lambda;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;
using static Lamina.Tests.Lambda.TestZips;

namespace Lamina.Tests.Lambda;

public sealed class CodeStoreTests : IDisposable
{
    private readonly string _dataDirectory = Path.Combine(Path.GetTempPath(), "lamina-codestore-" + Guid.NewGuid().ToString("N"));
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2025, 1, 2, 3, 4, 5, TimeSpan.Zero));

    public void Dispose()
    {
        if (Directory.Exists(_dataDirectory))
        {
            Directory.Delete(_dataDirectory, recursive: true);
        }
    }

    private CodeStore CreateSut(long unzippedLimit = CodeStore.MaxUnzippedBytes, int entryLimit = CodeStore.MaxEntries)
    {
        var store = new CodeStore(Options.Create(new LaminaOptions { DataDirectory = _dataDirectory }), _time)
        {
            UnzippedLimit = unzippedLimit,
            EntryLimit = entryLimit,
        };
        store.Initialize();
        return store;
    }

    private static byte[] Bytes(string text) => System.Text.Encoding.UTF8.GetBytes(text);

    private static void AssertNothingLeftBehind(CodeStore store) => Assert.Empty(Directory.GetFileSystemEntries(store.Root));

    [Fact]
    public async Task StoreAsync_ValidZip_ExtractsTreeAndKeepsZip()
    {
        var store = CreateSut();
        var zip = Build(new Entry("index.js", Bytes("x")), new Entry("lib/util.js", Bytes("y")), new Entry("empty/", []));

        var result = await store.StoreAsync(zip, CancellationToken.None);

        Assert.Null(result.Error);
        var code = result.Code!;
        Assert.Equal(Convert.ToBase64String(SHA256.HashData(zip)), code.Sha256);
        Assert.Equal(zip.Length, code.Size);
        var tree = Path.Combine(store.Root, code.HashHex);
        Assert.Equal("x", File.ReadAllText(Path.Combine(tree, "index.js")));
        Assert.Equal("y", File.ReadAllText(Path.Combine(tree, "lib", "util.js")));
        Assert.True(Directory.Exists(Path.Combine(tree, "empty")));
        Assert.Equal(zip, File.ReadAllBytes(Path.Combine(store.Root, code.HashHex + ".zip")));
        Assert.Equal((UnixFileMode)0b111_101_101, File.GetUnixFileMode(tree));
        Assert.Equal((UnixFileMode)0b111_101_101, File.GetUnixFileMode(Path.Combine(tree, "lib")));
        Assert.DoesNotContain(Directory.GetFileSystemEntries(store.Root), p => Path.GetFileName(p).StartsWith("tmp-", StringComparison.Ordinal));
    }

    [Fact]
    public async Task StoreAsync_UnixModes_ExecutableKeptSetuidDroppedDefaultsReadable()
    {
        var store = CreateSut();
        var zip = Build(
            new Entry("bootstrap", Bytes("#!/bin/sh"), RegularFile | 0b111_101_101),          // 0755
            new Entry("owner-only-exec", Bytes("x"), RegularFile | 0b111_000_000),            // 0700
            new Entry("setuid", Bytes("x"), RegularFile | 0b100_111_101_101),                  // 04755
            new Entry("private", Bytes("x"), RegularFile | 0b110_000_000),                     // 0600
            new Entry("world-writable", Bytes("x"), RegularFile | 0b110_110_110),              // 0666
            new Entry("windows-made", Bytes("x")));                                            // no unix mode

        var result = await store.StoreAsync(zip, CancellationToken.None);

        Assert.Null(result.Error);
        var tree = Path.Combine(store.Root, result.Code!.HashHex);
        var executable = (UnixFileMode)0b111_101_101;
        var regular = (UnixFileMode)0b110_100_100;
        Assert.Equal(executable, File.GetUnixFileMode(Path.Combine(tree, "bootstrap")));
        Assert.Equal(executable, File.GetUnixFileMode(Path.Combine(tree, "owner-only-exec")));
        Assert.Equal(executable, File.GetUnixFileMode(Path.Combine(tree, "setuid")));
        Assert.Equal(regular, File.GetUnixFileMode(Path.Combine(tree, "private")));
        Assert.Equal(regular, File.GetUnixFileMode(Path.Combine(tree, "world-writable")));
        Assert.Equal(regular, File.GetUnixFileMode(Path.Combine(tree, "windows-made")));
    }

    [Theory]
    [InlineData("../evil.js")]
    [InlineData("a/../../evil.js")]
    [InlineData("/etc/evil")]
    [InlineData("..\\evil.js")]
    [InlineData("a\\b.js")]
    [InlineData("C:\\evil.js")]
    [InlineData("C:evil.js")]
    [InlineData("a//b.js")]
    [InlineData("a/\u0001b.js")]
    [InlineData("..")]
    public async Task StoreAsync_UnsafeEntryName_RefusesWholeUploadAndLeavesNothing(string name)
    {
        var store = CreateSut();
        var zip = Build(new Entry("index.js", Bytes("ok")), new Entry(name, Bytes("evil")));

        var result = await store.StoreAsync(zip, CancellationToken.None);

        Assert.Null(result.Code);
        Assert.Equal("InvalidParameterValueException", result.Error!.Code);
        Assert.StartsWith(CodeStore.UnzipFailedMessage, result.Error.Message, StringComparison.Ordinal);
        AssertNothingLeftBehind(store);
        Assert.False(File.Exists(Path.Combine(_dataDirectory, "evil.js")));
    }

    [Fact]
    public async Task StoreAsync_SymlinkEntry_RefusesWholeUpload()
    {
        var store = CreateSut();
        var zip = Build(new Entry("index.js", Bytes("ok")), new Entry("link", Bytes("/etc/passwd"), Symlink | 0b111_111_111), new Entry("link/x", Bytes("through")));

        var result = await store.StoreAsync(zip, CancellationToken.None);

        Assert.Equal("InvalidParameterValueException", result.Error!.Code);
        Assert.Contains("symbolic link", result.Error.Message, StringComparison.Ordinal);
        AssertNothingLeftBehind(store);
    }

    [Fact]
    public async Task StoreAsync_DuplicateEntry_RefusedNotOverwritten()
    {
        var store = CreateSut();
        var zip = Build(new Entry("index.js", Bytes("first")), new Entry("index.js", Bytes("second")));

        var result = await store.StoreAsync(zip, CancellationToken.None);

        Assert.Equal(CodeStore.UnzipFailedMessage, result.Error!.Message);
        AssertNothingLeftBehind(store);
    }

    [Theory]
    [InlineData(new byte[0])]
    [InlineData(new byte[] { 0x50, 0x4b })]
    [InlineData(new byte[] { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24 })]
    public async Task StoreAsync_NotAZip_CouldNotUnzip(byte[] bytes)
    {
        var store = CreateSut();

        var result = await store.StoreAsync(bytes, CancellationToken.None);

        Assert.Equal(CodeStore.UnzipFailedMessage, result.Error!.Message);
        AssertNothingLeftBehind(store);
    }

    [Fact]
    public async Task StoreAsync_TruncatedZip_CouldNotUnzip()
    {
        var store = CreateSut();
        var zip = Build(new Entry("index.js", RandomNumberGenerator.GetBytes(10_000)));

        var result = await store.StoreAsync(zip[..(zip.Length / 2)], CancellationToken.None);

        Assert.Equal(CodeStore.UnzipFailedMessage, result.Error!.Message);
        AssertNothingLeftBehind(store);
    }

    [Fact]
    public async Task StoreAsync_CorruptedCompressedData_CouldNotUnzip()
    {
        var store = CreateSut();
        var zip = Build(new Entry("index.js", RandomNumberGenerator.GetBytes(10_000)));
        for (var i = 60; i < 200; i++)
        {
            zip[i] ^= 0x5A; // inside the first entry's data
        }

        var result = await store.StoreAsync(zip, CancellationToken.None);

        Assert.Equal(CodeStore.UnzipFailedMessage, result.Error!.Message);
        AssertNothingLeftBehind(store);
    }

    [Fact]
    public async Task StoreAsync_WrongCrc32_CouldNotUnzip()
    {
        var store = CreateSut();
        var zip = Build(new Entry("index.js", Bytes("exports.handler = async () => 1;")));
        // The data inflates fine; only its CRC-32 (in the local header and in the central directory) is wrong.
        zip[14] ^= 0xFF;
        var central = zip.AsSpan().LastIndexOf("PK\u0001\u0002"u8);
        zip[central + 16] ^= 0xFF;

        var result = await store.StoreAsync(zip, CancellationToken.None);

        Assert.Equal(CodeStore.UnzipFailedMessage, result.Error!.Message);
        AssertNothingLeftBehind(store);
    }

    [Fact]
    public async Task StoreAsync_UnzippedOverLimit_CountedOnActualBytes()
    {
        var store = CreateSut(unzippedLimit: 1_000_000);
        // Three honest entries of 400 KB each: every one is under the limit, the sum is not.
        var zip = Build(new Entry("a", new byte[400_000]), new Entry("b", new byte[400_000]), new Entry("c", new byte[400_000]));

        var result = await store.StoreAsync(zip, CancellationToken.None);

        Assert.Equal("Unzipped size must be smaller than 1000000 bytes", result.Error!.Message);
        AssertNothingLeftBehind(store);
    }

    [Fact]
    public async Task StoreAsync_DeclaredSizeSmallerThanData_NeverWritesMoreThanDeclared()
    {
        var store = CreateSut(unzippedLimit: 1_000_000);
        // 5 MB of zeros compress to a few KB; the headers claim 10 bytes. .NET stops inflating at the declared
        // size, so whatever happens, no more than 10 bytes reach the disk.
        var zip = LieAboutSizes(Build(new Entry("bomb", new byte[5_000_000])), declared: 10);

        var result = await store.StoreAsync(zip, CancellationToken.None);

        if (result.Code is null)
        {
            Assert.Equal("InvalidParameterValueException", result.Error!.Code);
            AssertNothingLeftBehind(store);
        }
        else
        {
            Assert.True(new FileInfo(Path.Combine(store.Root, result.Code.HashHex, "bomb")).Length <= 10);
        }
    }

    [Fact]
    public async Task StoreAsync_DeclaredSizeLargerThanData_Refused()
    {
        var store = CreateSut();
        var zip = LieAboutSizes(Build(new Entry("short", new byte[1000])), declared: 100_000);

        var result = await store.StoreAsync(zip, CancellationToken.None);

        Assert.Equal("InvalidParameterValueException", result.Error!.Code);
        AssertNothingLeftBehind(store);
    }

    [Fact]
    public async Task StoreAsync_HonestBigEntry_StoppedAtTheLimit()
    {
        var store = CreateSut(unzippedLimit: 1_000_000);
        var zip = Build(new Entry("big", new byte[3_000_000]));

        var result = await store.StoreAsync(zip, CancellationToken.None);

        Assert.Equal("Unzipped size must be smaller than 1000000 bytes", result.Error!.Message);
        AssertNothingLeftBehind(store);
    }

    [Fact]
    public async Task StoreAsync_TooManyEntries_RefusedBeforeExtracting()
    {
        var store = CreateSut(entryLimit: 10);
        var zip = Build(Enumerable.Range(0, 11).Select(i => new Entry($"f{i}", [1])).ToArray());

        var result = await store.StoreAsync(zip, CancellationToken.None);

        Assert.Contains("more than 10 entries", result.Error!.Message, StringComparison.Ordinal);
        AssertNothingLeftBehind(store);
    }

    [Fact]
    public void CountCentralDirectoryEntries_CountsRecordsAndRejectsGarbage()
    {
        var zip = Build(Enumerable.Range(0, 7).Select(i => new Entry($"f{i}", [1])).ToArray());

        Assert.Equal(7, CodeStore.CountCentralDirectoryEntries(zip, 100));
        Assert.Equal(5, CodeStore.CountCentralDirectoryEntries(zip, 5));
        Assert.Equal(-1, CodeStore.CountCentralDirectoryEntries(new byte[100], 100));
    }

    [Fact]
    public async Task StoreAsync_SameBytesTwice_SameCodeOneTree()
    {
        var store = CreateSut();
        var zip = Simple();

        var first = await store.StoreAsync(zip, CancellationToken.None);
        var second = await store.StoreAsync(zip, CancellationToken.None);

        Assert.Equal(first.Code, second.Code);
        Assert.Equal(2, Directory.GetFileSystemEntries(store.Root).Length); // <hex>/ and <hex>.zip
    }

    [Fact]
    public async Task ValidateAsync_KeepsNothing()
    {
        var store = CreateSut();

        var result = await store.ValidateAsync(Simple(), CancellationToken.None);

        Assert.NotNull(result.Code);
        AssertNothingLeftBehind(store);
    }

    [Fact]
    public async Task Initialize_RemovesInterruptedUploads()
    {
        var store = CreateSut();
        Directory.CreateDirectory(Path.Combine(store.Root, "tmp-abc", "x"));
        File.WriteAllText(Path.Combine(store.Root, "tmp-def.zip"), "partial");
        var kept = await store.StoreAsync(Simple(), CancellationToken.None);

        Assert.Equal(2, store.Initialize());

        Assert.Equal(2, Directory.GetFileSystemEntries(store.Root).Length);
        Assert.True(Directory.Exists(Path.Combine(store.Root, kept.Code!.HashHex)));
    }

    [Fact]
    public async Task GetCodeDirectory_IsTheExtractedTree()
    {
        var store = CreateSut();
        var stored = await store.StoreAsync(Simple(), CancellationToken.None);
        var config = new FunctionConfig
        {
            Name = "f", Runtime = "nodejs20.x", Role = "r", Handler = "index.handler",
            CodeSha256 = stored.Code!.Sha256, CodeSize = stored.Code.Size, LastModified = _time.GetUtcNow(), RevisionId = "1",
        };

        Assert.True(File.Exists(Path.Combine(store.GetCodeDirectory(config), "index.js")));
    }

    [Fact]
    public async Task EnsureExtractedAsync_MissingTree_RecreatedFromZip()
    {
        var store = CreateSut();
        var stored = await store.StoreAsync(Simple(), CancellationToken.None);
        Directory.Delete(Path.Combine(store.Root, stored.Code!.HashHex), recursive: true);

        Assert.True(await store.EnsureExtractedAsync(stored.Code.HashHex, CancellationToken.None));
        Assert.True(File.Exists(Path.Combine(store.Root, stored.Code.HashHex, "index.js")));
    }

    [Fact]
    public void DownloadUrl_ValidForTenMinutesOnly()
    {
        var store = CreateSut();
        var hash = new string('a', 64);
        var url = new Uri(store.CreateDownloadUrl("http://127.0.0.1:9000", hash));
        var query = System.Web.HttpUtility.ParseQueryString(url.Query);

        Assert.Equal($"/lamina/code/{hash}.zip", url.AbsolutePath);
        Assert.True(store.IsValidDownload(hash, query["expires"], query["signature"]));
        Assert.False(store.IsValidDownload(new string('b', 64), query["expires"], query["signature"]));
        Assert.False(store.IsValidDownload(hash, (long.Parse(query["expires"]!) + 1).ToString(), query["signature"]));
        Assert.False(store.IsValidDownload("../../etc/passwd", query["expires"], query["signature"]));

        _time.Advance(TimeSpan.FromMinutes(10) + TimeSpan.FromSeconds(1));
        Assert.False(store.IsValidDownload(hash, query["expires"], query["signature"]));
    }

    // ---- Collect: unused code leaves the disk ----------------------------------------------------------------------

    // The zips' mtimes are the real clock's: the collector's clock starts there.
    private (CodeStore Store, FakeTimeProvider Time) CreateCollectedSut()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var store = new CodeStore(Options.Create(new LaminaOptions { DataDirectory = _dataDirectory }), time);
        store.Initialize();
        store.InitializeOpt();
        return (store, time);
    }

    private static readonly TimeSpan Retention = TimeSpan.FromHours(1);

    [Fact]
    public async Task Collect_DeletesCodeUnreferencedForTheRetention_AndKeepsReferencedCode()
    {
        var (store, time) = CreateCollectedSut();
        var kept = (await store.StoreAsync(Build(new Entry("a.py", Bytes("a"))), CancellationToken.None)).Code!;
        var replaced = (await store.StoreAsync(Build(new Entry("b.py", Bytes("b"))), CancellationToken.None)).Code!;
        var referenced = new HashSet<string> { kept.HashHex };
        var since = new Dictionary<string, DateTime>();

        Assert.Equal(0, store.Collect(referenced, new HashSet<string>(), since, Retention)); // first seen unreferenced
        time.Advance(TimeSpan.FromMinutes(59));
        Assert.Equal(0, store.Collect(referenced, new HashSet<string>(), since, Retention));
        time.Advance(TimeSpan.FromMinutes(2));
        Assert.Equal(1, store.Collect(referenced, new HashSet<string>(), since, Retention));

        Assert.False(Directory.Exists(Path.Combine(store.Root, replaced.HashHex)));
        Assert.False(File.Exists(Path.Combine(store.Root, replaced.HashHex + ".zip")));
        Assert.True(Directory.Exists(Path.Combine(store.Root, kept.HashHex)));
        Assert.NotNull(store.TryGetZipPath(kept.HashHex));
        Assert.Empty(since);
    }

    [Fact]
    public async Task Collect_SparesCodeStoredAgain_UntilItIsUnusedForTheRetentionOnceMore()
    {
        var (store, time) = CreateCollectedSut();
        var zip = Build(new Entry("b.py", Bytes("b")));
        var code = (await store.StoreAsync(zip, CancellationToken.None)).Code!;
        var none = new HashSet<string>();
        var since = new Dictionary<string, DateTime>();
        Assert.Equal(0, store.Collect(none, none, since, Retention));
        time.Advance(TimeSpan.FromMinutes(61));

        // Uploaded again (a configuration about to use it is being written): not deleted under it.
        Assert.NotNull((await store.StoreAsync(zip, CancellationToken.None)).Code);
        Assert.Equal(0, store.Collect(none, none, since, Retention));
        time.Advance(TimeSpan.FromMinutes(61));
        Assert.Equal(1, store.Collect(none, none, since, Retention));
        Assert.Null(store.TryGetZipPath(code.HashHex));

        // And the same bytes stored after their deletion are stored whole again.
        Assert.NotNull((await store.StoreAsync(zip, CancellationToken.None)).Code);
        Assert.Equal("b", File.ReadAllText(Path.Combine(store.Root, code.HashHex, "b.py")));
        Assert.NotNull(store.TryGetZipPath(code.HashHex));
    }

    [Fact]
    public async Task Collect_DeletesMergedLayerTreesNoConfigurationUses_AndKeepsTheLayers()
    {
        var (store, time) = CreateCollectedSut();
        var first = (await store.StoreAsync(Build(new Entry("python/one.py", Bytes("1"))), CancellationToken.None)).Code!;
        var second = (await store.StoreAsync(Build(new Entry("python/two.py", Bytes("2"))), CancellationToken.None)).Code!;
        FunctionLayer[] layers = [new("arn:aws:lambda:us-east-1:000000000000:layer:one:1", first.Size, first.Sha256),
            new("arn:aws:lambda:us-east-1:000000000000:layer:two:1", second.Size, second.Sha256)];
        Assert.Null(await store.EnsureLayersAsync(layers, CancellationToken.None));
        var merged = Path.Combine(store.OptRoot, CodeStore.MergeKey(layers));
        Assert.True(File.Exists(Path.Combine(merged, "python", "two.py")));
        var layerCode = new HashSet<string> { first.HashHex, second.HashHex };
        var since = new Dictionary<string, DateTime>();

        Assert.Equal(0, store.Collect(layerCode, new HashSet<string> { CodeStore.MergeKey(layers) }, since, Retention));
        time.Advance(TimeSpan.FromMinutes(61));
        Assert.Equal(0, store.Collect(layerCode, new HashSet<string> { CodeStore.MergeKey(layers) }, since, Retention));
        Assert.Equal(0, store.Collect(layerCode, new HashSet<string>(), since, Retention)); // its last user changed its layers
        time.Advance(TimeSpan.FromMinutes(61));
        Assert.Equal(1, store.Collect(layerCode, new HashSet<string>(), since, Retention));

        Assert.False(Directory.Exists(merged));
        Assert.True(File.Exists(Path.Combine(store.Root, second.HashHex, "python", "two.py")));
        // Asked for again (a configuration with the same list), it is merged again.
        Assert.Null(await store.EnsureLayersAsync(layers, CancellationToken.None));
        Assert.True(File.Exists(Path.Combine(merged, "python", "one.py")));
    }

    [Fact]
    public void Collect_LeavesWhatIsNotAPackageAlone()
    {
        var (store, time) = CreateCollectedSut();
        File.WriteAllText(Path.Combine(store.Root, "notes.txt"), "mine");
        Directory.CreateDirectory(Path.Combine(store.Root, "tmp-" + Guid.NewGuid().ToString("N")));
        var none = new HashSet<string>();
        var since = new Dictionary<string, DateTime>();
        store.Collect(none, none, since, Retention);
        time.Advance(TimeSpan.FromHours(2));

        Assert.Equal(0, store.Collect(none, none, since, Retention));
        Assert.Equal(2, Directory.GetFileSystemEntries(store.Root).Length);
    }
}

