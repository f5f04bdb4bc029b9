using System.Buffers.Binary;
using System.IO.Hashing;
using System.Text;

namespace Lamina.Server.Protocols;

/// <summary>
/// The AWS event stream framing (<c>application/vnd.amazon.eventstream</c>), as botocore's <c>eventstream.py</c> and
/// the JS SDK's <c>@smithy/eventstream-codec</c> parse it: each message is a prelude (total length, headers length,
/// CRC32 of those 8 bytes), the headers, the payload and a CRC32 of everything before it, all big-endian. Lamina only
/// writes events with string headers (<c>:event-type</c>, <c>:message-type</c>, <c>:content-type</c>).
/// </summary>
internal static class EventStream
{
    public const string ContentType = "application/vnd.amazon.eventstream";

    private const int PreludeLength = 12;
    private const byte StringHeader = 7;

    /// <summary>The size of one event message with these headers and a payload of <paramref name="payloadLength"/> bytes.</summary>
    public static int MessageLength(string eventType, string contentType, int payloadLength) =>
        PreludeLength + HeadersLength(eventType, contentType) + payloadLength + 4;

    /// <summary>Writes one <c>:message-type event</c> message into <paramref name="destination"/> (exactly <see cref="MessageLength"/> bytes).</summary>
    public static void WriteEvent(Span<byte> destination, string eventType, string contentType, ReadOnlySpan<byte> payload)
    {
        var headersLength = HeadersLength(eventType, contentType);
        var total = PreludeLength + headersLength + payload.Length + 4;
        BinaryPrimitives.WriteInt32BigEndian(destination, total);
        BinaryPrimitives.WriteInt32BigEndian(destination[4..], headersLength);
        BinaryPrimitives.WriteUInt32BigEndian(destination[8..], Crc32.HashToUInt32(destination[..8]));
        var at = PreludeLength;
        at += WriteHeader(destination[at..], ":event-type", eventType);
        at += WriteHeader(destination[at..], ":content-type", contentType);
        at += WriteHeader(destination[at..], ":message-type", "event");
        payload.CopyTo(destination[at..]);
        at += payload.Length;
        BinaryPrimitives.WriteUInt32BigEndian(destination[at..], Crc32.HashToUInt32(destination[..at]));
    }

    /// <summary>One event message as a new array.</summary>
    public static byte[] Event(string eventType, string contentType, ReadOnlySpan<byte> payload)
    {
        var message = new byte[MessageLength(eventType, contentType, payload.Length)];
        WriteEvent(message, eventType, contentType, payload);
        return message;
    }

    private static int HeadersLength(string eventType, string contentType) =>
        HeaderLength(":event-type", eventType) + HeaderLength(":content-type", contentType) + HeaderLength(":message-type", "event");

    // name length (1), name, type (1), value length (2), value.
    private static int HeaderLength(string name, string value) => 1 + Encoding.ASCII.GetByteCount(name) + 1 + 2 + Encoding.UTF8.GetByteCount(value);

    private static int WriteHeader(Span<byte> destination, string name, string value)
    {
        var nameLength = Encoding.ASCII.GetBytes(name, destination[1..]);
        destination[0] = (byte)nameLength;
        var at = 1 + nameLength;
        destination[at++] = StringHeader;
        var valueLength = Encoding.UTF8.GetBytes(value, destination[(at + 2)..]);
        BinaryPrimitives.WriteUInt16BigEndian(destination[at..], (ushort)valueLength);
        return at + 2 + valueLength;
    }
}
