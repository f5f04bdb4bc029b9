using System.Globalization;
using System.Security.Cryptography;
using System.Text;

namespace Lamina.Server.S3;

/// <summary>What a signed aws-chunked body's chunk signatures chain from: the request's signature and signing key.</summary>
internal sealed record ChunkSigning(byte[] SigningKey, string Date, string Scope, string SeedSignature);

/// <summary>
/// Decodes an <c>aws-chunked</c> request body (S3's streaming upload encoding): <c>&lt;hex size&gt;[;chunk-signature=…]\r\n
/// &lt;bytes&gt;\r\n</c> … <c>0\r\n</c>, then optional trailing headers (<c>x-amz-checksum-crc32:…</c>, the
/// trailer signature) and an empty line. botocore sends <c>STREAMING-UNSIGNED-PAYLOAD-TRAILER</c> with a CRC32 trailer;
/// the .NET and Java SDKs over plain HTTP sign every chunk (<c>STREAMING-AWS4-HMAC-SHA256-PAYLOAD</c>), and each
/// signature is checked here when a signing key is known. Malformed framing or a bad signature throws
/// <see cref="S3Exception"/>: the upload is refused whole.
/// </summary>
internal sealed class AwsChunkedStream : Stream
{
    private const int MaxLine = 4096;
    private static readonly string EmptyHash = Convert.ToHexStringLower(SHA256.HashData([]));

    private readonly Stream _inner;
    private readonly ChunkSigning? _signing;
    private readonly byte[] _buffer = new byte[64 * 1024];
    private int _start;
    private int _end;
    private long _remaining;
    private bool _started;
    private bool _done;
    private string? _chunkSignature;
    private string? _previousSignature;
    private IncrementalHash? _chunkHash;

    public AwsChunkedStream(Stream inner, ChunkSigning? signing)
    {
        _inner = inner;
        _signing = signing;
        _previousSignature = signing?.SeedSignature;
    }

    /// <summary>The trailing headers (lower-case names), once the body has been read to its end.</summary>
    public Dictionary<string, string> Trailers { get; } = new(StringComparer.OrdinalIgnoreCase);

    public long DecodedLength { get; private set; }

    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
    public override void Flush() { }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    public override int Read(byte[] buffer, int offset, int count) => ReadAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override async ValueTask<int> ReadAsync(Memory<byte> destination, CancellationToken cancellationToken = default)
    {
        if (_done || destination.Length == 0)
        {
            return 0;
        }
        if (_remaining == 0)
        {
            if (_started)
            {
                if ((await ReadLineAsync(cancellationToken)).Length != 0)
                {
                    throw Malformed("a chunk's data is not followed by CRLF");
                }
            }
            _started = true;
            var header = await ReadLineAsync(cancellationToken);
            var semicolon = header.IndexOf(';', StringComparison.Ordinal);
            var sizeText = semicolon < 0 ? header : header[..semicolon];
            if (sizeText.Length is 0 or > 16 || !long.TryParse(sizeText, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var size) || size < 0)
            {
                throw Malformed($"'{Truncate(header)}' is not a chunk header");
            }
            _chunkSignature = null;
            if (semicolon >= 0)
            {
                var extension = header[(semicolon + 1)..];
                const string name = "chunk-signature=";
                if (extension.StartsWith(name, StringComparison.Ordinal))
                {
                    _chunkSignature = extension[name.Length..];
                }
            }
            if (_signing is not null && _chunkSignature is null)
            {
                throw new S3Exception(403, "SignatureDoesNotMatch", "A chunk of the signed aws-chunked body has no chunk-signature.");
            }
            _chunkHash = _signing is null ? null : IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            if (size == 0)
            {
                VerifyChunk();
                await ReadTrailersAsync(cancellationToken);
                _done = true;
                return 0;
            }
            _remaining = size;
        }
        if (_start == _end && !await FillAsync(cancellationToken))
        {
            throw new S3Exception(400, "IncompleteBody", "The request body ended inside an aws-chunked chunk.");
        }
        var count = (int)Math.Min(Math.Min(_remaining, destination.Length), _end - _start);
        var data = _buffer.AsSpan(_start, count);
        data.CopyTo(destination.Span);
        _chunkHash?.AppendData(data);
        _start += count;
        _remaining -= count;
        DecodedLength += count;
        if (_remaining == 0)
        {
            VerifyChunk();
        }
        return count;
    }

    private void VerifyChunk()
    {
        if (_signing is null || _chunkHash is null)
        {
            return;
        }
        var stringToSign = $"AWS4-HMAC-SHA256-PAYLOAD\n{_signing.Date}\n{_signing.Scope}\n{_previousSignature}\n{EmptyHash}\n{Convert.ToHexStringLower(_chunkHash.GetHashAndReset())}";
        var expected = Convert.ToHexStringLower(HMACSHA256.HashData(_signing.SigningKey, Encoding.UTF8.GetBytes(stringToSign)));
        if (!CryptographicOperations.FixedTimeEquals(Encoding.ASCII.GetBytes(expected), Encoding.ASCII.GetBytes(_chunkSignature ?? "")))
        {
            throw new S3Exception(403, "SignatureDoesNotMatch", "The chunk signature we calculated does not match the signature you provided.");
        }
        _previousSignature = expected;
    }

    private async Task ReadTrailersAsync(CancellationToken cancellationToken)
    {
        var canonical = new StringBuilder();
        string? trailerSignature = null;
        while (true)
        {
            // The unsigned-trailer form may end at the last trailer without the final empty line.
            if (_start == _end && !await FillAsync(cancellationToken))
            {
                break;
            }
            var line = await ReadLineAsync(cancellationToken);
            if (line.Length == 0)
            {
                break;
            }
            var colon = line.IndexOf(':', StringComparison.Ordinal);
            if (colon <= 0)
            {
                throw Malformed($"'{Truncate(line)}' is not a trailing header");
            }
            var name = line[..colon].Trim().ToLowerInvariant();
            var value = line[(colon + 1)..].Trim();
            if (name == "x-amz-trailer-signature")
            {
                trailerSignature = value;
                continue;
            }
            Trailers[name] = value;
            canonical.Append(name).Append(':').Append(value).Append('\n');
        }
        if (_signing is not null && trailerSignature is not null)
        {
            var stringToSign = $"AWS4-HMAC-SHA256-TRAILER\n{_signing.Date}\n{_signing.Scope}\n{_previousSignature}\n{Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(canonical.ToString())))}";
            var expected = Convert.ToHexStringLower(HMACSHA256.HashData(_signing.SigningKey, Encoding.UTF8.GetBytes(stringToSign)));
            if (!CryptographicOperations.FixedTimeEquals(Encoding.ASCII.GetBytes(expected), Encoding.ASCII.GetBytes(trailerSignature)))
            {
                throw new S3Exception(403, "SignatureDoesNotMatch", "The trailer signature we calculated does not match the signature you provided.");
            }
        }
    }

    private async ValueTask<string> ReadLineAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            var span = _buffer.AsSpan(_start, _end - _start);
            var cr = span.IndexOf("\r\n"u8);
            if (cr >= 0)
            {
                var line = Encoding.ASCII.GetString(span[..cr]);
                _start += cr + 2;
                return line;
            }
            if (_end - _start >= MaxLine)
            {
                throw Malformed("a chunk header or trailer line is too long");
            }
            if (!await FillAsync(cancellationToken))
            {
                if (_end > _start)
                {
                    // A last line without CRLF (some clients end the trailer so).
                    var line = Encoding.ASCII.GetString(_buffer, _start, _end - _start);
                    _start = _end;
                    return line;
                }
                throw new S3Exception(400, "IncompleteBody", "The request body ended before the aws-chunked encoding did.");
            }
        }
    }

    private async ValueTask<bool> FillAsync(CancellationToken cancellationToken)
    {
        if (_start > 0)
        {
            Buffer.BlockCopy(_buffer, _start, _buffer, 0, _end - _start);
            _end -= _start;
            _start = 0;
        }
        var read = await _inner.ReadAsync(_buffer.AsMemory(_end), cancellationToken);
        _end += read;
        return read > 0;
    }

    private static S3Exception Malformed(string what) => new(400, "InvalidRequest", $"The aws-chunked request body is malformed: {what}.");

    private static string Truncate(string text) => text.Length <= 64 ? text : text[..64] + "…";

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _chunkHash?.Dispose();
        }
        base.Dispose(disposing);
    }
}
