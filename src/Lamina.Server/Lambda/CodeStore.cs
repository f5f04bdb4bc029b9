using System.Buffers;
using System.Buffers.Binary;
using System.Globalization;
using System.IO.Compression;
using System.IO.Hashing;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using Lamina.Server.Hosting;
using Lamina.Server.Protocols;
using Microsoft.Extensions.Options;

namespace Lamina.Server.Lambda;

/// <summary>A stored deployment package: what Lambda reports about it and where its tree is.</summary>
/// <param name="Sha256">Base64 SHA-256 of the zip, Lambda's <c>CodeSha256</c>.</param>
/// <param name="HashHex">Lower-case hex of the same hash: the key in the store.</param>
/// <param name="Size">Bytes of the zip, Lambda's <c>CodeSize</c>.</param>
internal sealed record CodeInfo(string Sha256, string HashHex, long Size);

/// <summary>The outcome of storing or validating a package: the code, or an AWS-shaped error.</summary>
internal readonly record struct CodeStoreResult(CodeInfo? Code, AwsError? Error);

/// <summary>
/// Deployment packages, content-addressed by SHA-256 under <c>&lt;DataDirectory&gt;/code/</c>: the zip as
/// <c>&lt;hex&gt;.zip</c> and its extracted tree as <c>&lt;hex&gt;/</c>, which sandboxes mount read-only at
/// <c>/var/task</c>. Trees are extracted into <c>tmp-&lt;guid&gt;</c>, flushed, then renamed into place, so a
/// <c>&lt;hex&gt;/</c> directory is always complete; startup removes leftover <c>tmp-*</c>.
/// </summary>
/// <remarks>
/// Uploads are hostile input (RELIABILITY.md §3.7, §4.1): entry names are checked (absolute, <c>..</c>,
/// backslashes, drive letters, control characters), links and device entries refuse the whole package, the
/// decompressed bytes are counted as they are written (declared sizes can lie), and the entry count is read from
/// the central directory before .NET materialises it. Nothing is left behind when a package is refused.
/// Blobs are shared by every configuration and layer version with the same bytes; <see cref="Collect"/> deletes those
/// nothing has referenced for a while (<see cref="CodeCollector"/>).
/// </remarks>
internal sealed partial class CodeStore
{
    /// <summary>Lambda's direct-upload limit for a zip (AccountLimit.CodeSizeZipped).</summary>
    public const long MaxZippedBytes = 52_428_800;

    /// <summary>Lambda's unzipped limit (AccountLimit.CodeSizeUnzipped), counted on the bytes actually written.</summary>
    public const long MaxUnzippedBytes = 262_144_000;

    /// <summary>
    /// Entries per package. Lambda has no documented number; this bounds memory and inode use against a zip of
    /// a million empty files (a 50 MB zip can hold ~1M central-directory records).
    /// </summary>
    public const int MaxEntries = 20_000;

    /// <summary>How long a <see cref="CreateDownloadUrl"/> link works. Lambda's presigned URLs last 10 minutes.</summary>
    public static readonly TimeSpan DownloadUrlLifetime = TimeSpan.FromMinutes(10);

    public const string UnzipFailedMessage = "Could not unzip uploaded file. Please check your file, then try to upload again.";

    // The server's failure, not the package's: a full disk must not read as "check your file" (RELIABILITY.md, disk full).
    private static readonly AwsError OutOfSpace = AwsError.Service(
        "Lamina could not store the deployment package: no space left on the file system of its data directory. Free space there, then upload again.");

    // ENOSPC and EDQUOT, which .NET gives as the IOException's HResult on Linux.
    private static bool IsOutOfSpace(IOException e) => e.HResult is 28 or 122;

    private const UnixFileMode DirectoryMode = (UnixFileMode)0b111_101_101; // 0755
    private const UnixFileMode RegularFileMode = (UnixFileMode)0b110_100_100; // 0644
    private const UnixFileMode ExecutableFileMode = DirectoryMode;            // 0755

    private readonly TimeProvider _timeProvider;

    // Per process: download links die with the server, which is fine for 10-minute links.
    private readonly byte[] _downloadKey = RandomNumberGenerator.GetBytes(32);

    public CodeStore(IOptions<LaminaOptions> options, TimeProvider timeProvider)
    {
        // A cluster's nodes share the code (issue #25): one directory they all mount at the same path.
        _shared = options.Value.SharedDirectory is not null;
        Root = Path.GetFullPath(Path.Combine(options.Value.SharedDirectory ?? options.Value.DataDirectory, "code"));
        _timeProvider = timeProvider;
    }

    private readonly bool _shared;

    // Taken to give a stored zip and tree their final names or to reuse them, and by the collector to delete them:
    // a package being stored is either seen by the collector as fresh or stored again after its deletion.
    private readonly Lock _collectLock = new();

    /// <summary>
    /// Whether a <c>tmp-*</c> entry is what an interrupted upload or merge left. In a shared directory another node
    /// may be writing it right now: only those untouched for an hour are.
    /// </summary>
    private bool IsLeftover(FileSystemInfo entry) =>
        !_shared || _timeProvider.GetUtcNow().UtcDateTime - entry.LastWriteTimeUtc > TimeSpan.FromHours(1);

    public string Root { get; }

    /// <summary>The limits in force; tests lower them to stay fast.</summary>
    internal long UnzippedLimit { get; init; } = MaxUnzippedBytes;

    internal int EntryLimit { get; init; } = MaxEntries;

    /// <summary>Creates the store and removes what an interrupted upload left (<c>tmp-*</c>). Returns how many.</summary>
    public int Initialize()
    {
        Directory.CreateDirectory(Root);
        var removed = 0;
        foreach (var entry in new DirectoryInfo(Root).EnumerateFileSystemInfos("tmp-*"))
        {
            if (!IsLeftover(entry))
            {
                continue;
            }
            if (entry is DirectoryInfo directory)
            {
                directory.Delete(recursive: true);
            }
            else
            {
                entry.Delete();
            }
            removed++;
        }
        return removed;
    }

    /// <summary>The extracted tree of the function's code (mounted read-only at <c>/var/task</c>).</summary>
    public string GetCodeDirectory(FunctionConfig config) => Path.Combine(Root, config.CodeHashHex);

    /// <summary>The stored zip for a hex hash, or null if <paramref name="hashHex"/> is not a hash or not stored.</summary>
    public string? TryGetZipPath(string hashHex)
    {
        if (!IsHashHex(hashHex))
        {
            return null;
        }
        var path = Path.Combine(Root, hashHex + ".zip");
        return File.Exists(path) ? path : null;
    }

    /// <summary>Validates, stores and extracts a package. Storing the same bytes again is cheap and harmless.</summary>
    public Task<CodeStoreResult> StoreAsync(byte[] zip, CancellationToken cancellationToken) => ProcessAsync(zip, keep: true, cancellationToken);

    /// <summary>Validates a package fully (extracting it to a temporary directory) and keeps nothing: DryRun.</summary>
    public Task<CodeStoreResult> ValidateAsync(byte[] zip, CancellationToken cancellationToken) => ProcessAsync(zip, keep: false, cancellationToken);

    /// <summary>
    /// Re-creates a missing extracted tree from its stored zip (a tree removed by hand, or an older layout).
    /// True if the tree exists afterwards.
    /// </summary>
    public async Task<bool> EnsureExtractedAsync(string hashHex, CancellationToken cancellationToken)
    {
        if (!IsHashHex(hashHex))
        {
            return false;
        }
        if (Directory.Exists(Path.Combine(Root, hashHex)))
        {
            return true;
        }
        var zipPath = Path.Combine(Root, hashHex + ".zip");
        if (!File.Exists(zipPath))
        {
            return false;
        }
        var zip = await File.ReadAllBytesAsync(zipPath, cancellationToken);
        var result = await ProcessAsync(zip, keep: true, cancellationToken);
        return result.Code is not null && Directory.Exists(Path.Combine(Root, hashHex));
    }

    /// <summary>
    /// A URL on this server that serves the zip without credentials for <see cref="DownloadUrlLifetime"/>
    /// (GetFunction's <c>Code.Location</c>): <c>/lamina/code/&lt;hex&gt;.zip?expires=&lt;unix&gt;&amp;signature=&lt;hmac&gt;</c>.
    /// </summary>
    public string CreateDownloadUrl(string baseUrl, string hashHex)
    {
        var expires = (_timeProvider.GetUtcNow() + DownloadUrlLifetime).ToUnixTimeSeconds();
        return $"{baseUrl.TrimEnd('/')}/lamina/code/{hashHex}.zip?expires={expires.ToString(CultureInfo.InvariantCulture)}&signature={Sign(hashHex, expires)}";
    }

    /// <summary>Checks a download link's expiry and signature (constant-time).</summary>
    public bool IsValidDownload(string hashHex, string? expires, string? signature)
    {
        if (!IsHashHex(hashHex) || signature is null || !long.TryParse(expires, NumberStyles.None, CultureInfo.InvariantCulture, out var expiresAt))
        {
            return false;
        }
        if (_timeProvider.GetUtcNow().ToUnixTimeSeconds() > expiresAt)
        {
            return false;
        }
        var expected = Encoding.ASCII.GetBytes(Sign(hashHex, expiresAt));
        var actual = Encoding.ASCII.GetBytes(signature);
        return CryptographicOperations.FixedTimeEquals(expected, actual);
    }

    private string Sign(string hashHex, long expires)
    {
        var message = Encoding.ASCII.GetBytes($"{hashHex}:{expires.ToString(CultureInfo.InvariantCulture)}");
        return Convert.ToHexStringLower(HMACSHA256.HashData(_downloadKey, message));
    }

    private static bool IsHashHex(string value) => value.Length == 64 && value.All(char.IsAsciiHexDigitLower);

    private async Task<CodeStoreResult> ProcessAsync(byte[] zip, bool keep, CancellationToken cancellationToken)
    {
        // 1. Cheap checks on the raw bytes.
        if (zip.Length == 0)
        {
            return Fail(UnzipFailedMessage);
        }
        if (zip.Length > MaxZippedBytes)
        {
            return Fail($"Zipped size must be smaller than {MaxZippedBytes} bytes");
        }
        var hash = SHA256.HashData(zip);
        var code = new CodeInfo(Convert.ToBase64String(hash), Convert.ToHexStringLower(hash), zip.Length);
        var finalDirectory = Path.Combine(Root, code.HashHex);
        if (keep)
        {
            lock (_collectLock)
            {
                if (Directory.Exists(finalDirectory) && File.Exists(finalDirectory + ".zip"))
                {
                    // Same bytes were accepted before: the same checks would pass again. Touched, so that the collector
                    // leaves them alone while the configuration that will use them is being written.
                    File.SetLastWriteTimeUtc(finalDirectory + ".zip", _timeProvider.GetUtcNow().UtcDateTime);
                    return new CodeStoreResult(code, null);
                }
            }
        }

        var entryCount = CountCentralDirectoryEntries(zip, EntryLimit + 1);
        if (entryCount < 0)
        {
            return Fail(UnzipFailedMessage);
        }
        if (entryCount > EntryLimit)
        {
            return Fail($"The deployment package has more than {EntryLimit} entries, the limit of this server.");
        }

        // 2. Extract into a private temporary directory; on any refusal it is removed whole.
        Directory.CreateDirectory(Root);
        var temp = Path.Combine(Root, "tmp-" + Guid.NewGuid().ToString("N"));
        var tempZip = temp + ".zip";
        try
        {
            Directory.CreateDirectory(temp);
            File.SetUnixFileMode(temp, DirectoryMode);
            var error = await ExtractAsync(zip, temp, UnzippedLimit, cancellationToken);
            if (error is not null)
            {
                return new CodeStoreResult(null, error);
            }
            if (!keep)
            {
                return new CodeStoreResult(code, null);
            }

            // 3. Make the tree and the zip durable before they get their final names, so a name always means a
            //    complete tree; then rename (atomic) and flush the renames.
            //    The zip is written afresh even when one is stored (only a missing tree comes here with one): its new
            //    mtime keeps the collector away until the configuration using it is written.
            var finalZip = finalDirectory + ".zip";
            await using (var file = new FileStream(tempZip, FileMode.CreateNew, FileAccess.Write, FileShare.None, 81920, useAsync: true))
            {
                await file.WriteAsync(zip, cancellationToken);
            }
            File.SetUnixFileMode(tempZip, RegularFileMode);
            SyncFileSystem(Root);

            lock (_collectLock) // the collector deletes a zip and its tree together, under this lock
            {
                File.Move(tempZip, finalZip, overwrite: true);
                if (!Directory.Exists(finalDirectory))
                {
                    try
                    {
                        Directory.Move(temp, finalDirectory);
                    }
                    catch (IOException) when (Directory.Exists(finalDirectory))
                    {
                        // A concurrent upload of the same bytes won the rename; its tree is identical.
                    }
                }
            }
            SyncFileSystem(Root);
            return new CodeStoreResult(code, null);
        }
        catch (IOException e) when (IsOutOfSpace(e))
        {
            return new CodeStoreResult(null, OutOfSpace);
        }
        finally
        {
            if (Directory.Exists(temp))
            {
                Directory.Delete(temp, recursive: true);
            }
            if (File.Exists(tempZip))
            {
                File.Delete(tempZip);
            }
        }
    }

    private static async Task<AwsError?> ExtractAsync(byte[] zip, string destination, long unzippedLimit, CancellationToken cancellationToken)
    {
        var root = Path.TrimEndingDirectorySeparator(destination) + Path.DirectorySeparatorChar;
        long written = 0;
        var buffer = ArrayPool<byte>.Shared.Rent(81920);
        try
        {
            using var archive = new ZipArchive(new MemoryStream(zip, writable: false), ZipArchiveMode.Read);
            foreach (var entry in archive.Entries)
            {
                cancellationToken.ThrowIfCancellationRequested();
                if (!TryGetRelativePath(entry.FullName, out var relative, out var isDirectory))
                {
                    return AwsError.InvalidParameter($"{UnzipFailedMessage} Entry '{Printable(entry.FullName)}' has an unsafe path.");
                }

                // Upper 16 bits: the Unix st_mode when the zip was made on Unix (zero otherwise).
                var unixMode = (entry.ExternalAttributes >> 16) & 0xFFFF;
                var type = unixMode & 0xF000;
                if (type == 0x4000)
                {
                    isDirectory = true;
                }
                else if (type is not (0 or 0x8000))
                {
                    // Symlinks (0xA000) could point outside /var/task; devices, FIFOs and sockets have no place here.
                    return AwsError.InvalidParameter($"{UnzipFailedMessage} Entry '{Printable(entry.FullName)}' is a symbolic link or special file, which Lamina does not accept.");
                }
                if (relative.Length == 0)
                {
                    continue; // "./" and the like: the root itself.
                }

                var target = Path.GetFullPath(Path.Combine(root, relative));
                if (!target.StartsWith(root, StringComparison.Ordinal))
                {
                    return AwsError.InvalidParameter($"{UnzipFailedMessage} Entry '{Printable(entry.FullName)}' has an unsafe path.");
                }

                try
                {
                    if (isDirectory)
                    {
                        CreateDirectories(root, target);
                        continue;
                    }

                    CreateDirectories(root, Path.GetDirectoryName(target)!);
                    // 0755 when the owner may execute (bootstrap, binaries), else 0644: readable by the sandbox user,
                    // never setuid/setgid/sticky, never group/other-writable.
                    var mode = (unixMode & 0b001_000_000) != 0 ? ExecutableFileMode : RegularFileMode;
                    var options = new FileStreamOptions
                    {
                        Mode = FileMode.CreateNew, // a duplicate entry is refused, never overwrites
                        Access = FileAccess.Write,
                        Share = FileShare.None,
                        Options = FileOptions.Asynchronous,
                        UnixCreateMode = mode,
                    };
                    long entryWritten = 0;
                    var crc = new Crc32();
                    await using (var output = new FileStream(target, options))
                    await using (var input = entry.Open())
                    {
                        int read;
                        while ((read = await input.ReadAsync(buffer.AsMemory(0, buffer.Length), cancellationToken)) > 0)
                        {
                            written += read;
                            if (written > unzippedLimit)
                            {
                                return AwsError.InvalidParameter($"Unzipped size must be smaller than {unzippedLimit} bytes");
                            }
                            entryWritten += read;
                            crc.Append(buffer.AsSpan(0, read));
                            await output.WriteAsync(buffer.AsMemory(0, read), cancellationToken);
                        }
                    }
                    if (entryWritten != entry.Length || crc.GetCurrentHashAsUInt32() != entry.Crc32)
                    {
                        // The data ended before the size its headers declare, or is not what its CRC-32 says (as
                        // unzip and Python's zipfile check it; .NET does not): a corrupt or doctored package.
                        return AwsError.InvalidParameter(UnzipFailedMessage);
                    }
                    File.SetUnixFileMode(target, mode); // the umask may have narrowed UnixCreateMode
                }
                catch (IOException e) when (IsOutOfSpace(e))
                {
                    return OutOfSpace;
                }
                catch (IOException)
                {
                    // Duplicate names, a file where a directory must be, over-long names, a corrupt or truncated stream.
                    return AwsError.InvalidParameter(UnzipFailedMessage);
                }
                catch (UnauthorizedAccessException)
                {
                    return AwsError.InvalidParameter(UnzipFailedMessage);
                }
            }
            return null;
        }
        catch (Exception e) when (e is InvalidDataException or NotSupportedException)
        {
            // Not a zip, a corrupt central directory, an unsupported compression method or encryption, a CRC or
            // length mismatch found while inflating.
            return AwsError.InvalidParameter(UnzipFailedMessage);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>
    /// Turns an entry name into a relative path, refusing anything that could leave the tree: absolute names,
    /// drive letters, backslashes, <c>..</c>, empty segments, control characters. <c>.</c> segments are dropped.
    /// </summary>
    internal static bool TryGetRelativePath(string name, out string relative, out bool isDirectory)
    {
        relative = "";
        isDirectory = name.EndsWith('/');
        if (name.Length == 0 || name[0] == '/' || name.Contains('\\') ||
            (name.Length >= 2 && char.IsAsciiLetter(name[0]) && name[1] == ':'))
        {
            return false;
        }
        foreach (var c in name)
        {
            if (char.IsControl(c))
            {
                return false;
            }
        }

        var kept = new List<string>();
        foreach (var segment in (isDirectory ? name[..^1] : name).Split('/'))
        {
            switch (segment)
            {
                case "..":
                case "": // "a//b"
                    return false;
                case ".":
                    continue;
                default:
                    kept.Add(segment);
                    break;
            }
        }
        relative = string.Join('/', kept); // empty for "./": the root itself
        return true;
    }

    // Creates each missing directory from root down to path with mode 0755 (not subject to the umask).
    private static void CreateDirectories(string root, string path)
    {
        if (path.Length + 1 <= root.Length || Directory.Exists(path))
        {
            return;
        }
        CreateDirectories(root, Path.GetDirectoryName(path)!);
        Directory.CreateDirectory(path);
        File.SetUnixFileMode(path, DirectoryMode);
    }

    /// <summary>
    /// Walks the zip's central directory (End Of Central Directory record, Zip64 when flagged) and counts its
    /// records, stopping at <paramref name="stopAt"/>. Returns -1 when the structure is not a zip's. This runs
    /// before <see cref="ZipArchive"/>, which would materialise every entry first.
    /// </summary>
    internal static int CountCentralDirectoryEntries(ReadOnlySpan<byte> zip, int stopAt)
    {
        const int EocdLength = 22;
        if (zip.Length < EocdLength)
        {
            return -1;
        }
        // The EOCD is the last record, followed by a comment of at most 65535 bytes.
        var eocd = -1;
        for (var i = zip.Length - EocdLength; i >= Math.Max(0, zip.Length - EocdLength - 0xFFFF); i--)
        {
            if (BinaryPrimitives.ReadUInt32LittleEndian(zip[i..]) == 0x06054b50)
            {
                eocd = i;
                break;
            }
        }
        if (eocd < 0)
        {
            return -1;
        }

        long offset = BinaryPrimitives.ReadUInt32LittleEndian(zip[(eocd + 16)..]);
        long count = BinaryPrimitives.ReadUInt16LittleEndian(zip[(eocd + 10)..]);
        if ((offset == 0xFFFFFFFF || count == 0xFFFF) && eocd >= 20 &&
            BinaryPrimitives.ReadUInt32LittleEndian(zip[(eocd - 20)..]) == 0x07064b50)
        {
            var zip64 = BinaryPrimitives.ReadInt64LittleEndian(zip[(eocd - 20 + 8)..]);
            if (zip64 < 0 || zip64 > zip.Length - 56 || BinaryPrimitives.ReadUInt32LittleEndian(zip[(int)zip64..]) != 0x06064b50)
            {
                return -1;
            }
            count = BinaryPrimitives.ReadInt64LittleEndian(zip[((int)zip64 + 32)..]);
            offset = BinaryPrimitives.ReadInt64LittleEndian(zip[((int)zip64 + 48)..]);
        }
        if (count > stopAt)
        {
            return stopAt;
        }

        // Walk the records themselves: the declared count can lie.
        var records = 0;
        var position = offset;
        while (position >= 0 && position <= zip.Length - 46 &&
               BinaryPrimitives.ReadUInt32LittleEndian(zip[(int)position..]) == 0x02014b50)
        {
            if (++records >= stopAt)
            {
                return records;
            }
            var nameLength = BinaryPrimitives.ReadUInt16LittleEndian(zip[((int)position + 28)..]);
            var extraLength = BinaryPrimitives.ReadUInt16LittleEndian(zip[((int)position + 30)..]);
            var commentLength = BinaryPrimitives.ReadUInt16LittleEndian(zip[((int)position + 32)..]);
            position += 46L + nameLength + extraLength + commentLength;
        }
        return records;
    }

    private static string Printable(string name)
    {
        var builder = new StringBuilder(Math.Min(name.Length, 200));
        foreach (var c in name.AsSpan(0, Math.Min(name.Length, 200)))
        {
            builder.Append(char.IsControl(c) ? '?' : c);
        }
        return builder.ToString();
    }

    private static CodeStoreResult Fail(string message) => new(null, AwsError.InvalidParameter(message));

    // One syncfs(2) flushes every file of the extracted tree (thousands of files in node_modules) at the cost of
    // one call, instead of an fsync per file.
    private static void SyncFileSystem(string directory)
    {
        if (!OperatingSystem.IsLinux())
        {
            return;
        }
        var fd = Open(directory, ORdOnly | OCloExec); // a directory opens read-only without O_DIRECTORY
        if (fd < 0)
        {
            throw new IOException($"open({directory}) for syncfs failed: errno {Marshal.GetLastPInvokeError()}");
        }
        try
        {
            if (SyncFs(fd) != 0)
            {
                throw new IOException($"syncfs({directory}) failed: errno {Marshal.GetLastPInvokeError()}");
            }
        }
        finally
        {
            _ = Close(fd);
        }
    }

    private const int ORdOnly = 0;
    private const int OCloExec = 0x80000; // 02000000 on x86-64 and arm64 alike

    [LibraryImport("libc", EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "syncfs", SetLastError = true)]
    private static partial int SyncFs(int fd);

    [LibraryImport("libc", EntryPoint = "close")]
    private static partial int Close(int fd);
}
