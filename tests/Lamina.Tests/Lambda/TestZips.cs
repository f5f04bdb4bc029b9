using System.Buffers.Binary;
using System.IO.Compression;

namespace Lamina.Tests.Lambda;

/// <summary>Builds deployment packages in memory, including hostile ones.</summary>
internal static class TestZips
{
    public const int RegularFile = 0x8000;
    public const int DirectoryType = 0x4000;
    public const int Symlink = 0xA000;

    public sealed record Entry(string Name, byte[] Content, int? UnixMode = null);

    public static byte[] Build(params Entry[] entries)
    {
        using var buffer = new MemoryStream();
        using (var archive = new ZipArchive(buffer, ZipArchiveMode.Create, leaveOpen: true))
        {
            foreach (var entry in entries)
            {
                var zipEntry = archive.CreateEntry(entry.Name, CompressionLevel.Fastest);
                if (entry.UnixMode is { } mode)
                {
                    zipEntry.ExternalAttributes = mode << 16;
                }
                using var stream = zipEntry.Open();
                stream.Write(entry.Content);
            }
        }
        return buffer.ToArray();
    }

    public static byte[] Simple(string name = "index.js", string content = "exports.handler = async () => 1;") =>
        Build(new Entry(name, System.Text.Encoding.UTF8.GetBytes(content)));

    /// <summary>
    /// Rewrites the declared uncompressed size of every entry (local header and central directory) to
    /// <paramref name="declared"/>: the header lies, the data does not.
    /// </summary>
    public static byte[] LieAboutSizes(byte[] zip, uint declared)
    {
        var bytes = (byte[])zip.Clone();
        for (var i = 0; i + 30 <= bytes.Length; i++)
        {
            var signature = BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(i));
            if (signature == 0x04034b50)
            {
                BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(i + 22), declared);
            }
            else if (signature == 0x02014b50 && i + 46 <= bytes.Length)
            {
                BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(i + 24), declared);
            }
        }
        return bytes;
    }
}
