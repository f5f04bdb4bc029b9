using System.Buffers.Binary;
using System.IO.Hashing;
using System.Text;
using Lamina.Server.Protocols;

namespace Lamina.Tests.Protocols;

public sealed class EventStreamTests
{
    // Decodes one message the way botocore's eventstream.py does, checking both CRCs.
    private static (Dictionary<string, string> Headers, byte[] Payload) Decode(byte[] message)
    {
        var total = BinaryPrimitives.ReadInt32BigEndian(message);
        var headersLength = BinaryPrimitives.ReadInt32BigEndian(message.AsSpan(4));
        Assert.Equal(message.Length, total);
        Assert.Equal(Crc32.HashToUInt32(message.AsSpan(0, 8)), BinaryPrimitives.ReadUInt32BigEndian(message.AsSpan(8)));
        Assert.Equal(Crc32.HashToUInt32(message.AsSpan(0, total - 4)), BinaryPrimitives.ReadUInt32BigEndian(message.AsSpan(total - 4)));
        var headers = new Dictionary<string, string>();
        var at = 12;
        while (at < 12 + headersLength)
        {
            var nameLength = message[at++];
            var name = Encoding.ASCII.GetString(message, at, nameLength);
            at += nameLength;
            Assert.Equal(7, message[at++]); // string
            var valueLength = BinaryPrimitives.ReadUInt16BigEndian(message.AsSpan(at));
            at += 2;
            headers[name] = Encoding.UTF8.GetString(message, at, valueLength);
            at += valueLength;
        }
        return (headers, message[(12 + headersLength)..(total - 4)]);
    }

    [Fact]
    public void Event_PayloadChunk_HasPreludeHeadersPayloadAndCrcs()
    {
        var message = EventStream.Event("PayloadChunk", "application/octet-stream", "first|"u8);
        var (headers, payload) = Decode(message);
        Assert.Equal("PayloadChunk", headers[":event-type"]);
        Assert.Equal("event", headers[":message-type"]);
        Assert.Equal("application/octet-stream", headers[":content-type"]);
        Assert.Equal("first|"u8.ToArray(), payload);
        Assert.Equal(EventStream.MessageLength("PayloadChunk", "application/octet-stream", 6), message.Length);
    }

    [Fact]
    public void Event_EmptyPayload_IsStillAValidMessage()
    {
        var (headers, payload) = Decode(EventStream.Event("InvokeComplete", "application/json", []));
        Assert.Equal("InvokeComplete", headers[":event-type"]);
        Assert.Empty(payload);
    }
}
