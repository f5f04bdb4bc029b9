using System.Security.Cryptography;
using System.Text;
using Lamina.Server.S3;

namespace Lamina.Tests.S3;

public sealed class AwsChunkedStreamTests
{
    // AWS's worked example of a chunked upload signed with Signature Version 4 ("Signature Calculations for the
    // Authorization Header: Transferring Payload in Multiple Chunks"): 65 KiB of 'a' in a 64 KiB and a 1 KiB chunk.
    private const string Secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    private const string SeedSignature = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9";
    private static readonly string[] ChunkSignatures =
    [
        "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
        "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
        "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
    ];

    private static ChunkSigning AwsExampleSigning()
    {
        var key = Hmac(Encoding.UTF8.GetBytes("AWS4" + Secret), "20130524");
        foreach (var part in new[] { "us-east-1", "s3", "aws4_request" })
        {
            key = Hmac(key, part);
        }
        return new ChunkSigning(key, "20130524T000000Z", "20130524/us-east-1/s3/aws4_request", SeedSignature);
    }

    private static byte[] Hmac(byte[] key, string data) => HMACSHA256.HashData(key, Encoding.UTF8.GetBytes(data));

    private static byte[] Body(params (int Size, string? Signature)[] chunks)
    {
        var body = new MemoryStream();
        foreach (var (size, signature) in chunks)
        {
            var header = signature is null ? $"{size:x}\r\n" : $"{size:x};chunk-signature={signature}\r\n";
            body.Write(Encoding.ASCII.GetBytes(header));
            body.Write(Enumerable.Repeat((byte)'a', size).ToArray());
            body.Write("\r\n"u8);
        }
        return body.ToArray();
    }

    private static async Task<byte[]> DecodeAsync(byte[] body, ChunkSigning? signing, int readSize = 4096)
    {
        await using var stream = new AwsChunkedStream(new MemoryStream(body), signing);
        var decoded = new MemoryStream();
        var buffer = new byte[readSize];
        int read;
        while ((read = await stream.ReadAsync(buffer)) > 0)
        {
            decoded.Write(buffer, 0, read);
        }
        return decoded.ToArray();
    }

    [Fact]
    public async Task Read_AwsSignedExample_DecodesAndVerifiesEveryChunk()
    {
        var body = Body((65536, ChunkSignatures[0]), (1024, ChunkSignatures[1]), (0, ChunkSignatures[2]));

        var decoded = await DecodeAsync(body, AwsExampleSigning());

        Assert.Equal(66560, decoded.Length);
        Assert.All(decoded, b => Assert.Equal((byte)'a', b));
    }

    [Fact]
    public async Task Read_ChunkSignatureTampered_SignatureDoesNotMatch()
    {
        var tampered = "f" + ChunkSignatures[1][1..];
        var body = Body((65536, ChunkSignatures[0]), (1024, tampered), (0, ChunkSignatures[2]));

        var error = await Assert.ThrowsAsync<S3Exception>(() => DecodeAsync(body, AwsExampleSigning()));

        Assert.Equal((403, "SignatureDoesNotMatch"), (error.Status, error.Code));
    }

    [Fact]
    public async Task Read_ChunksReordered_SignatureDoesNotMatch()
    {
        // Each signature chains from the previous one: the right chunks in the wrong order fail.
        var body = Body((1024, ChunkSignatures[1]), (65536, ChunkSignatures[0]), (0, ChunkSignatures[2]));

        var error = await Assert.ThrowsAsync<S3Exception>(() => DecodeAsync(body, AwsExampleSigning()));

        Assert.Equal("SignatureDoesNotMatch", error.Code);
    }

    [Fact]
    public async Task Read_SignedExpectedButChunkUnsigned_Refused()
    {
        var body = Body((1024, null), (0, null));

        var error = await Assert.ThrowsAsync<S3Exception>(() => DecodeAsync(body, AwsExampleSigning()));

        Assert.Equal("SignatureDoesNotMatch", error.Code);
    }

    [Fact]
    public async Task Read_UnsignedWithChecksumTrailer_ReadsTrailers()
    {
        // botocore's STREAMING-UNSIGNED-PAYLOAD-TRAILER form, read one byte at a time to cross every boundary.
        var body = Encoding.ASCII.GetBytes("5\r\nhello\r\n6\r\n world\r\n0\r\nx-amz-checksum-crc32:DUoRhQ==\r\n\r\n");
        await using var stream = new AwsChunkedStream(new MemoryStream(body), signing: null);
        var decoded = new MemoryStream();
        var one = new byte[1];
        while (await stream.ReadAsync(one) > 0)
        {
            decoded.WriteByte(one[0]);
        }

        Assert.Equal("hello world", Encoding.ASCII.GetString(decoded.ToArray()));
        Assert.Equal("DUoRhQ==", stream.Trailers["x-amz-checksum-crc32"]);
        Assert.Equal(11, stream.DecodedLength);
    }

    [Theory]
    [InlineData("zz\r\nhello\r\n0\r\n\r\n")]          // not a hex size
    [InlineData("5\r\nhelloXX0\r\n\r\n")]              // data not followed by CRLF
    [InlineData("10\r\nshort")]                         // ends inside a chunk
    [InlineData("5\r\nhello\r\n")]                      // ends before the last chunk
    [InlineData("5\r\nhello\r\n0\r\nnot a trailer\r\n\r\n")]
    public async Task Read_MalformedFraming_RefusedWith4xx(string body)
    {
        var error = await Assert.ThrowsAsync<S3Exception>(() => DecodeAsync(Encoding.ASCII.GetBytes(body), signing: null));

        Assert.Equal(400, error.Status);
    }

    [Fact]
    public async Task Read_EndlessHeaderLine_RefusedWithoutBufferingIt()
    {
        var body = Encoding.ASCII.GetBytes(new string('1', 100_000));

        var error = await Assert.ThrowsAsync<S3Exception>(() => DecodeAsync(body, signing: null));

        Assert.Equal(400, error.Status);
    }
}
