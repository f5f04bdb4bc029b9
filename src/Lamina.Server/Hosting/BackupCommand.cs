using System.CommandLine;
using Microsoft.Data.Sqlite;

namespace Lamina.Server.Hosting;

/// <summary>
/// <c>lamina backup DEST [--data DIR]</c>: a copy of a single machine's data directory that <c>lamina serve --data DEST</c>
/// starts from, taken while the server runs. Each SQLite file goes through <c>VACUUM INTO</c> (a consistent snapshot
/// from one read transaction, whatever the server writes meanwhile; a file copy of a live database in WAL mode can
/// be torn); every other file (code packages and their trees, layers, S3's object bodies, all written once under a
/// temporary name and renamed into place) is copied as it is. What is only the running server's (its sandboxes'
/// <c>run/</c>, S3's uploads in flight) is left out.
/// </summary>
internal static class BackupCommand
{
    // The running server's own, rebuilt at start: sandboxes' runtime files, uploads not yet renamed into place.
    private static readonly string[] Skipped = ["run", "sandbox-etc", Path.Combine("s3", "tmp")];

    public static Command Build()
    {
        var data = CommandLine.DataOption("The server's data directory (the server may be running)");
        var destination = new Argument<string>("destination")
        {
            Description = "A directory that does not exist yet, or is empty: the backup, a data directory of its own",
            CustomParser = r => Path.GetFullPath(CommandLine.Single(r)),
        };
        var command = new Command("backup", "Copy a single machine's data directory while the server runs (each database as one consistent snapshot)")
        {
            destination, data,
        };
        command.SetAction(r => Run(r.GetValue(data)!, r.GetValue(destination)!));
        return command;
    }

    private static int Run(string data, string destination)
    {
        if (!File.Exists(Path.Combine(data, "lamina.db")))
        {
            Console.Error.WriteLine($"lamina backup: {data} is not a Lamina data directory (it has no lamina.db)");
            return 1;
        }
        if ((Directory.Exists(destination) && Directory.EnumerateFileSystemEntries(destination).Any()) || File.Exists(destination))
        {
            Console.Error.WriteLine($"lamina backup: {destination} exists and is not empty; a backup goes to a new directory");
            return 1;
        }
        var inside = Path.GetRelativePath(data, destination);
        if (inside == "." || (!inside.StartsWith("..", StringComparison.Ordinal) && !Path.IsPathRooted(inside)))
        {
            Console.Error.WriteLine($"lamina backup: {destination} is inside the data directory {data}");
            return 1;
        }
        Directory.CreateDirectory(destination);
        var (databases, files, bytes) = (0, 0, 0L);
        try
        {
            // The databases first: an object body or code package one of them names was in place before it was named.
            foreach (var path in Walk(data, data).OfType<FileInfo>().Where(f => f.LinkTarget is null && IsSqlite(f.FullName)).Select(f => f.FullName))
            {
                var target = Path.Combine(destination, Path.GetRelativePath(data, path));
                Directory.CreateDirectory(Path.GetDirectoryName(target)!);
                Snapshot(path, target);
                databases++;
                bytes += new FileInfo(target).Length;
            }
            foreach (var entry in Walk(data, data))
            {
                var target = Path.Combine(destination, Path.GetRelativePath(data, entry.FullName));
                if (entry.LinkTarget is { } link)
                {
                    Directory.CreateDirectory(Path.GetDirectoryName(target)!);
                    File.CreateSymbolicLink(target, link);
                }
                else if (entry is FileInfo file && !IsDatabaseFile(file.FullName))
                {
                    Directory.CreateDirectory(Path.GetDirectoryName(target)!);
                    try
                    {
                        file.CopyTo(target); // keeps the mode: a bootstrap stays executable
                    }
                    catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
                    {
                        continue; // deleted since it was listed (an object body, unused code): the snapshot no longer names it
                    }
                    files++;
                    bytes += file.Length;
                }
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or SqliteException)
        {
            Console.Error.WriteLine($"lamina backup: {e.Message}; {destination} is incomplete, remove it");
            return 1;
        }
        Console.WriteLine($"lamina backup: {databases} databases and {files} files ({bytes / (1024.0 * 1024.0):0.0} MB) in {destination}; start from it with: lamina serve --data {destination}");
        return 0;
    }

    /// <summary>
    /// The files and symbolic links under <paramref name="directory"/>, depth first, not into what is skipped nor
    /// through links; a directory removed while it is walked (an environment's, an upload's) is passed over.
    /// </summary>
    private static IEnumerable<FileSystemInfo> Walk(string data, string directory)
    {
        FileSystemInfo[] entries;
        try
        {
            entries = new DirectoryInfo(directory).GetFileSystemInfos();
        }
        catch (DirectoryNotFoundException)
        {
            yield break;
        }
        foreach (var entry in entries)
        {
            if (IsSkipped(data, entry.FullName) || (entry.Attributes & (FileAttributes.Device | FileAttributes.System)) != 0)
            {
                continue;
            }
            if (entry is DirectoryInfo { LinkTarget: null })
            {
                foreach (var inner in Walk(data, entry.FullName))
                {
                    yield return inner;
                }
                continue;
            }
            yield return entry;
        }
    }

    private static bool IsSkipped(string data, string path)
    {
        var relative = Path.GetRelativePath(data, path);
        return Array.Exists(Skipped, s => relative == s || relative.StartsWith(s + Path.DirectorySeparatorChar, StringComparison.Ordinal));
    }

    // A database, or one of its journals (a snapshot holds what they hold).
    private static bool IsDatabaseFile(string path) =>
        path.EndsWith("-wal", StringComparison.Ordinal) || path.EndsWith("-shm", StringComparison.Ordinal) || path.EndsWith("-journal", StringComparison.Ordinal) || IsSqlite(path);

    private static bool IsSqlite(string path)
    {
        Span<byte> header = stackalloc byte[16];
        try
        {
            using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            return file.ReadAtLeast(header, 16, throwOnEndOfStream: false) == 16 && header.SequenceEqual("SQLite format 3\0"u8);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    /// <summary>One read transaction's view of the database, written compacted to <paramref name="target"/>.</summary>
    private static void Snapshot(string path, string target)
    {
        using var connection = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = path, Pooling = false, DefaultTimeout = 30 }.ToString());
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "VACUUM INTO $target;";
        command.Parameters.AddWithValue("$target", target);
        command.ExecuteNonQuery();
    }
}
