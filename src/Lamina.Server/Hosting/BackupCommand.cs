using System.CommandLine;
using Microsoft.Data.Sqlite;

namespace Lamina.Server.Hosting;

/// <summary>
/// <c>lamina backup DEST [--data DIR]</c>: a copy of a single machine's data directory that <c>lamina serve --data DEST</c>
/// starts from, taken while the server runs. Each of Lamina's SQLite databases goes through <c>VACUUM INTO</c> (a consistent snapshot
/// from one read transaction, whatever the server writes meanwhile; a file copy of a live database in WAL mode can
/// be torn); every other file (code packages and their trees, layers, S3's object bodies, all written once under a
/// temporary name and renamed into place) is copied as it is. What is only the running server's (its sandboxes'
/// <c>run/</c>, S3's uploads in flight) is left out.
/// </summary>
internal static class BackupCommand
{
    // The running server's own, rebuilt at start: sandboxes' runtime files, uploads not yet renamed into place.
    private static readonly string[] Skipped = ["run", "sandbox-etc", Path.Combine("s3", "tmp")];

    // Lamina's databases, by their paths in the data directory (never found by content: an object or a code package
    // may well be a SQLite file, and must be copied byte for byte).
    private static readonly string[] Databases =
    [
        "lamina.db", "async.db", "logs.db", "queues.db", "dynamodb.db", "durable.db", "cloudformation.db", "keys.db", Path.Combine("s3", "s3.db"),
    ];

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
        if (inside == "." || (inside != ".." && !inside.StartsWith(".." + Path.DirectorySeparatorChar, StringComparison.Ordinal) && !Path.IsPathRooted(inside)))
        {
            Console.Error.WriteLine($"lamina backup: {destination} is inside the data directory {data}");
            return 1;
        }
        Directory.CreateDirectory(destination);
        var (databases, files, bytes, gone) = (0, 0, 0L, 0);
        try
        {
            // The databases first: an object body or code package one of them names was in place before it was named.
            foreach (var path in Databases.Select(d => Path.Combine(data, d)).Where(File.Exists))
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
                else if (entry is FileInfo file && !IsDatabaseFile(data, file.FullName))
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
            gone = LeaveOutDeletedBodies(destination);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or SqliteException)
        {
            Console.Error.WriteLine($"lamina backup: {e.Message}; {destination} is incomplete, remove it");
            return 1;
        }
        var left = gone == 0 ? "" : $" ({gone} S3 objects or parts deleted while the backup ran left out)";
        Console.WriteLine($"lamina backup: {databases} databases and {files} files ({bytes / (1024.0 * 1024.0):0.0} MB) in {destination}{left}; start from it with: lamina serve --data {destination}");
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
    private static bool IsDatabaseFile(string data, string path)
    {
        var relative = Path.GetRelativePath(data, path);
        return Array.Exists(Databases, d => relative == d || relative == d + "-wal" || relative == d + "-shm" || relative == d + "-journal");
    }

    /// <summary>
    /// An S3 object or part whose body was deleted (a delete, an overwrite) between the snapshot and the copy of the
    /// bodies is left out of the backup's S3 database too, as if the backup had been taken a moment later for it:
    /// every object the backup lists can be read. The number left out.
    /// </summary>
    private static int LeaveOutDeletedBodies(string destination)
    {
        var database = Path.Combine(destination, "s3", "s3.db");
        if (!File.Exists(database))
        {
            return 0;
        }
        using var connection = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = database, Pooling = false }.ToString());
        connection.Open();
        var left = 0;
        foreach (var table in (string[])["objects", "parts"])
        {
            var missing = new List<string>();
            using (var read = connection.CreateCommand())
            {
                read.CommandText = $"SELECT DISTINCT blob FROM {table} WHERE blob IS NOT NULL;";
                using var reader = read.ExecuteReader();
                while (reader.Read())
                {
                    var blob = reader.GetString(0);
                    if (blob.Length < 2 || !File.Exists(Path.Combine(destination, "s3", "objects", blob[..2], blob)))
                    {
                        missing.Add(blob);
                    }
                }
            }
            foreach (var blob in missing)
            {
                using var delete = connection.CreateCommand();
                delete.CommandText = $"DELETE FROM {table} WHERE blob = $blob;";
                delete.Parameters.AddWithValue("$blob", blob);
                left += delete.ExecuteNonQuery();
            }
        }
        return left;
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
