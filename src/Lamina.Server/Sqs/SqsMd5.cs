using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;

namespace Lamina.Server.Sqs;

/// <summary>
/// The digests SQS returns with every message, which the AWS SDKs check: the MD5 of the body's UTF-8 bytes, and the
/// MD5 of the message attributes in SQS's binary encoding — per attribute, sorted by name: the name, the data type
/// (each as a 4-byte big-endian length and UTF-8 bytes), a transport byte (1 string/number, 2 binary) and the value
/// (4-byte length and bytes).
/// </summary>
// MD5 here is SQS's wire format (a checksum the SDKs compare), not a security measure.
#pragma warning disable CA5351
internal static class SqsMd5
{
    public static string OfBody(string body) => Convert.ToHexStringLower(MD5.HashData(Encoding.UTF8.GetBytes(body)));

    public static string? OfAttributes(IReadOnlyList<(string Name, string DataType, string? StringValue, byte[]? BinaryValue)> attributes)
    {
        if (attributes.Count == 0)
        {
            return null;
        }
        using var buffer = new MemoryStream();
        foreach (var (name, dataType, stringValue, binaryValue) in attributes.OrderBy(static a => a.Name, StringComparer.Ordinal))
        {
            Write(buffer, Encoding.UTF8.GetBytes(name));
            Write(buffer, Encoding.UTF8.GetBytes(dataType));
            if (binaryValue is not null)
            {
                buffer.WriteByte(2);
                Write(buffer, binaryValue);
            }
            else
            {
                buffer.WriteByte(1);
                Write(buffer, Encoding.UTF8.GetBytes(stringValue ?? ""));
            }
        }
        return Convert.ToHexStringLower(MD5.HashData(buffer.ToArray()));
    }

    private static void Write(Stream stream, byte[] value)
    {
        Span<byte> length = stackalloc byte[4];
        BinaryPrimitives.WriteInt32BigEndian(length, value.Length);
        stream.Write(length);
        stream.Write(value);
    }
}
#pragma warning restore CA5351
