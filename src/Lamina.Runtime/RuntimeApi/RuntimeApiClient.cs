using System.Buffers;
using System.Buffers.Text;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Lamina.Runtime.RuntimeApi;

/// <summary>
/// The Runtime API 2018-06-01 (LAMBDA.md §5) over one kept-alive HTTP/1.1 connection, with blocking socket calls.
/// Measured in the sandbox (hello world, .NET 10, this 2-core machine): HttpClient costs ~100 ms of cold start
/// (SocketsHttpHandler, header collections, connection pool), async sockets ~5–10 ms more than blocking ones
/// (the socket engine thread); a runtime does one request at a time, so blocking calls lose nothing. An invocation's
/// response (or error) and the next <c>GET /next</c> go out in one write (HTTP/1.1 pipelining): one system call and one
/// wake-up fewer on each side per invocation.
/// </summary>
internal sealed class RuntimeApiClient : IDisposable
{
    private static ReadOnlySpan<byte> NextRequestLine => "GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\n"u8;

    private readonly EndPoint _endPoint;
    private readonly byte[] _hostHeader;
    private readonly byte[] _nextRequest;
    private Socket? _socket;
    private bool _nextSent; // a GET /next went out behind the last post: its response is the next to read
    private bool _disposed;

    // Received bytes not yet consumed are _buffer[_start.._end].
    private byte[] _buffer = new byte[16 * 1024];
    private int _start;
    private int _end;

    public RuntimeApiClient(string address)
    {
        _endPoint = ParseAddress(address);
        _hostHeader = Encoding.ASCII.GetBytes("Host: " + address + "\r\n");
        _nextRequest = [.. NextRequestLine, .. _hostHeader, .. "\r\n"u8];
    }

    /// <summary>Reads <c>AWS_LAMBDA_RUNTIME_API</c>.</summary>
    public static RuntimeApiClient FromEnvironment()
    {
        var address = Environment.GetEnvironmentVariable("AWS_LAMBDA_RUNTIME_API");
        if (string.IsNullOrEmpty(address))
        {
            throw new InvalidOperationException("AWS_LAMBDA_RUNTIME_API is not set: this program runs inside a Lamina (or AWS Lambda) execution environment.");
        }
        return new RuntimeApiClient(address);
    }

    /// <summary>
    /// <c>GET /runtime/invocation/next</c>: waits (without a time limit) for the next event. The first call may tell
    /// Lamina how long the handler's Init took (<paramref name="handlerInitMs"/>, a cold-start phase; Lambda ignores it).
    /// </summary>
    public InvocationRequest Next(double? handlerInitMs = null)
    {
        var extraHeaders = handlerInitMs is { } ms
            ? Encoding.ASCII.GetBytes(string.Create(System.Globalization.CultureInfo.InvariantCulture, $"Lamina-Handler-Init-Ms: {ms:F3}\r\n"))
            : default;
        Response? pipelined = null;
        if (_nextSent && _socket is { } socket)
        {
            _nextSent = false;
            try
            {
                pipelined = ReadResponse(socket);
            }
            catch (Exception e) when (e is SocketException or IOException or ConnectionClosedException && !_disposed)
            {
                DropConnection(); // asked again below, on a new connection
            }
        }
        var response = pipelined ?? Send(NextRequestLine, extraHeaders, default, hasBody: false);
        if (response.Status == 200)
        {
            return new InvocationRequest(response.Headers, response.Body);
        }
        // 403/500: the environment is being torn down or the state is wrong; nothing sensible is left to do.
        throw new RuntimeApiException($"GET /runtime/invocation/next answered {response.Status}: {Encoding.UTF8.GetString(response.Body)}");
    }

    /// <summary><c>POST /runtime/invocation/{id}/response</c>; <paramref name="thenNext"/>: the next <c>GET /next</c> goes out with it.</summary>
    public void PostResponse(string requestId, ReadOnlySpan<byte> body, string? contentType = null, bool thenNext = false) =>
        Post("/2018-06-01/runtime/invocation/" + requestId + "/response", body, contentType ?? "application/json", errorType: null, thenNext);

    /// <summary><c>POST /runtime/invocation/{id}/error</c> with the error-type header; <paramref name="thenNext"/> as for responses.</summary>
    public void PostError(string requestId, string errorType, ReadOnlySpan<byte> body, bool thenNext = false) =>
        Post("/2018-06-01/runtime/invocation/" + requestId + "/error", body, "application/vnd.aws.lambda.error+json", errorType, thenNext);

    /// <summary><c>POST /runtime/init/error</c>.</summary>
    public void PostInitError(string errorType, ReadOnlySpan<byte> body) =>
        Post("/2018-06-01/runtime/init/error", body, "application/vnd.aws.lambda.error+json", errorType);

    public void Dispose()
    {
        _disposed = true;
        _socket?.Dispose();
        _socket = null;
    }

    private void Post(string path, ReadOnlySpan<byte> body, string contentType, string? errorType, bool thenNext = false)
    {
        var requestLine = Encoding.ASCII.GetBytes("POST " + path + " HTTP/1.1\r\n");
        var headers = "Content-Type: " + contentType + "\r\n" + (errorType is null ? "" : "Lambda-Runtime-Function-Error-Type: " + Sanitize(errorType) + "\r\n");
        var response = Send(requestLine, Encoding.ASCII.GetBytes(headers), body, hasBody: true, thenNext ? _nextRequest : default);
        if (response.Status is < 200 or > 299)
        {
            // 400 (late or duplicate post), 413 (too large: the caller already got the error): the invocation is over
            // either way; log it and go on to the next one, as AWS's runtimes do.
            var message = $"POST {path} answered {response.Status}: {Encoding.UTF8.GetString(response.Body)}";
            if (response.Status >= 500)
            {
                throw new RuntimeApiException(message);
            }
            Console.Error.WriteLine(message);
        }
    }

    private Response Send(ReadOnlySpan<byte> requestLine, ReadOnlySpan<byte> extraHeaders, ReadOnlySpan<byte> body, bool hasBody, ReadOnlySpan<byte> following = default)
    {
        var head = BuildHead(requestLine, extraHeaders, hasBody ? body.Length : -1);
        // A kept-alive connection the server closed shows up on first use: reconnect and retry once.
        for (var attempt = 0; ; attempt++)
        {
            var reused = _socket is not null;
            var socket = _socket ?? Connect();
            try
            {
                SendAll(socket, head, body, following);
                _nextSent = !following.IsEmpty;
                return ReadResponse(socket);
            }
            catch (Exception e) when (e is SocketException or IOException or ConnectionClosedException && !_disposed)
            {
                DropConnection();
                if (!reused || attempt > 0)
                {
                    throw new RuntimeApiException($"the Runtime API at {_endPoint} is unreachable: {e.Message}", e);
                }
            }
        }
    }

    private byte[] BuildHead(ReadOnlySpan<byte> requestLine, ReadOnlySpan<byte> extraHeaders, int contentLength)
    {
        Span<byte> digits = stackalloc byte[16];
        var digitCount = 0;
        if (contentLength >= 0)
        {
            Utf8Formatter.TryFormat(contentLength, digits, out digitCount);
        }
        var length = requestLine.Length + _hostHeader.Length + extraHeaders.Length + (contentLength >= 0 ? "Content-Length: "u8.Length + digitCount + 2 : 0) + 2;
        var head = new byte[length];
        var span = head.AsSpan();
        requestLine.CopyTo(span);
        span = span[requestLine.Length..];
        _hostHeader.CopyTo(span);
        span = span[_hostHeader.Length..];
        extraHeaders.CopyTo(span);
        span = span[extraHeaders.Length..];
        if (contentLength >= 0)
        {
            "Content-Length: "u8.CopyTo(span);
            span = span["Content-Length: "u8.Length..];
            digits[..digitCount].CopyTo(span);
            span = span[digitCount..];
            "\r\n"u8.CopyTo(span);
            span = span[2..];
        }
        "\r\n"u8.CopyTo(span);
        return head;
    }

    private static void SendAll(Socket socket, ReadOnlySpan<byte> head, ReadOnlySpan<byte> body, ReadOnlySpan<byte> following)
    {
        // Small bodies go out in the same segment as the head (one write, one packet), and a pipelined request with them.
        if (body.Length <= 16 * 1024 && (body.Length > 0 || following.Length > 0))
        {
            var length = head.Length + body.Length + following.Length;
            var combined = ArrayPool<byte>.Shared.Rent(length);
            try
            {
                head.CopyTo(combined);
                body.CopyTo(combined.AsSpan(head.Length));
                following.CopyTo(combined.AsSpan(head.Length + body.Length));
                SendSpan(socket, combined.AsSpan(0, length));
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(combined);
            }
            return;
        }
        SendSpan(socket, head);
        SendSpan(socket, body);
        SendSpan(socket, following);
    }

    private static void SendSpan(Socket socket, ReadOnlySpan<byte> data)
    {
        while (data.Length > 0)
        {
            var sent = socket.Send(data);
            data = data[sent..];
        }
    }

    private Socket Connect()
    {
        var socket = _endPoint is IPEndPoint ip
            ? new Socket(ip.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true }
            : new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            socket.Connect(_endPoint);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
        _socket = socket;
        _start = _end = 0;
        return socket;
    }

    private void DropConnection()
    {
        _socket?.Dispose();
        _socket = null;
        _start = _end = 0;
        _nextSent = false;
    }

    private Response ReadResponse(Socket socket)
    {
        // 1. The head: status line and headers up to the blank line.
        int headEnd;
        while ((headEnd = _buffer.AsSpan(_start, _end - _start).IndexOf("\r\n\r\n"u8)) < 0)
        {
            Fill(socket);
        }
        var head = _buffer.AsSpan(_start, headEnd);
        _start += headEnd + 4;

        var lineEnd = head.IndexOf("\r\n"u8);
        var statusLine = lineEnd < 0 ? head : head[..lineEnd];
        // "HTTP/1.1 200 OK"
        if (statusLine.Length < 12 || !Utf8Parser.TryParse(statusLine.Slice(9, 3), out int status, out _))
        {
            throw new ConnectionClosedException("malformed status line");
        }

        var headers = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        long contentLength = -1;
        var chunked = false;
        var close = false;
        var rest = lineEnd < 0 ? default : head[(lineEnd + 2)..];
        while (rest.Length > 0)
        {
            var end = rest.IndexOf("\r\n"u8);
            var line = end < 0 ? rest : rest[..end];
            rest = end < 0 ? default : rest[(end + 2)..];
            var colon = line.IndexOf((byte)':');
            if (colon <= 0)
            {
                continue;
            }
            var name = Encoding.ASCII.GetString(line[..colon]);
            var value = Encoding.UTF8.GetString(line[(colon + 1)..].Trim(" \t"u8));
            headers[name] = value;
            if (name.Equals("Content-Length", StringComparison.OrdinalIgnoreCase))
            {
                contentLength = long.Parse(value, CultureInfo.InvariantCulture);
            }
            else if (name.Equals("Transfer-Encoding", StringComparison.OrdinalIgnoreCase))
            {
                chunked = value.Contains("chunked", StringComparison.OrdinalIgnoreCase);
            }
            else if (name.Equals("Connection", StringComparison.OrdinalIgnoreCase))
            {
                close = value.Equals("close", StringComparison.OrdinalIgnoreCase);
            }
        }

        // 2. The body: Content-Length, chunked, or (neither) until the server closes.
        byte[] body;
        if (chunked)
        {
            body = ReadChunked(socket);
        }
        else if (contentLength >= 0)
        {
            body = new byte[contentLength];
            ReadExactly(socket, body);
        }
        else
        {
            body = ReadToClose(socket);
            close = true;
        }
        if (close)
        {
            DropConnection();
        }
        return new Response(status, headers, body);
    }

    private void ReadExactly(Socket socket, Span<byte> destination)
    {
        var buffered = Math.Min(destination.Length, _end - _start);
        _buffer.AsSpan(_start, buffered).CopyTo(destination);
        _start += buffered;
        destination = destination[buffered..];
        while (destination.Length > 0)
        {
            var n = socket.Receive(destination);
            if (n == 0)
            {
                throw new ConnectionClosedException("connection closed in the body");
            }
            destination = destination[n..];
        }
    }

    private byte[] ReadChunked(Socket socket)
    {
        var output = new MemoryStream();
        while (true)
        {
            var line = ReadLine(socket);
            var semicolon = line.IndexOf(';');
            var size = int.Parse(semicolon >= 0 ? line[..semicolon] : line, NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            if (size == 0)
            {
                // Trailers, up to the blank line.
                while (ReadLine(socket).Length > 0)
                {
                }
                return output.ToArray();
            }
            var chunk = new byte[size];
            ReadExactly(socket, chunk);
            output.Write(chunk);
            ReadLine(socket);
        }
    }

    private string ReadLine(Socket socket)
    {
        int end;
        while ((end = _buffer.AsSpan(_start, _end - _start).IndexOf("\r\n"u8)) < 0)
        {
            Fill(socket);
        }
        var line = Encoding.ASCII.GetString(_buffer, _start, end);
        _start += end + 2;
        return line.Trim();
    }

    private byte[] ReadToClose(Socket socket)
    {
        var output = new MemoryStream();
        output.Write(_buffer, _start, _end - _start);
        _start = _end = 0;
        var chunk = new byte[16 * 1024];
        int n;
        while ((n = socket.Receive(chunk)) > 0)
        {
            output.Write(chunk, 0, n);
        }
        return output.ToArray();
    }

    /// <summary>Receives more bytes after the unconsumed ones, compacting or growing the buffer as needed.</summary>
    private void Fill(Socket socket)
    {
        if (_start > 0)
        {
            Buffer.BlockCopy(_buffer, _start, _buffer, 0, _end - _start);
            _end -= _start;
            _start = 0;
        }
        if (_end == _buffer.Length)
        {
            if (_buffer.Length >= 1024 * 1024)
            {
                throw new ConnectionClosedException("response head larger than 1 MiB");
            }
            Array.Resize(ref _buffer, _buffer.Length * 2);
        }
        var n = socket.Receive(_buffer.AsSpan(_end));
        if (n == 0)
        {
            throw new ConnectionClosedException("connection closed");
        }
        _end += n;
    }

    private static EndPoint ParseAddress(string address)
    {
        // host:port, without a scheme (LAMBDA.md §5); an IPv6 host is bracketed.
        var colon = address.LastIndexOf(':');
        var host = colon > 0 ? address[..colon] : address;
        var port = colon > 0 && int.TryParse(address.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out var p) ? p : 80;
        if (host.StartsWith('[') && host.EndsWith(']'))
        {
            host = host[1..^1];
        }
        if (TryParseIPv4(host, out var v4))
        {
            return new IPEndPoint(v4, port);
        }
        if (IPAddress.TryParse(host, out var ip))
        {
            return new IPEndPoint(ip, port);
        }
        return new DnsEndPoint(host, port);
    }

    /// <summary>
    /// Dotted-quad IPv4 (the usual <c>127.0.0.1</c>) without <see cref="IPAddress.TryParse(string?, out IPAddress?)"/>,
    /// whose generic parser is not precompiled and costs a JIT at every cold start.
    /// </summary>
    private static bool TryParseIPv4(string host, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out IPAddress? address)
    {
        address = null;
        var bytes = new byte[4];
        var part = 0;
        var value = -1;
        foreach (var c in host)
        {
            if (c == '.')
            {
                if (value < 0 || part == 3)
                {
                    return false;
                }
                bytes[part++] = (byte)value;
                value = -1;
            }
            else if (c is >= '0' and <= '9')
            {
                value = (value < 0 ? 0 : value * 10) + (c - '0');
                if (value > 255)
                {
                    return false;
                }
            }
            else
            {
                return false;
            }
        }
        if (part != 3 || value < 0)
        {
            return false;
        }
        bytes[3] = (byte)value;
        address = new IPAddress(bytes);
        return true;
    }

    private static string Sanitize(string headerValue) =>
        headerValue.Contains('\r') || headerValue.Contains('\n') ? headerValue.Replace("\r", "", StringComparison.Ordinal).Replace("\n", " ", StringComparison.Ordinal) : headerValue;

    private readonly record struct Response(int Status, Dictionary<string, string> Headers, byte[] Body);

    private sealed class ConnectionClosedException(string message) : Exception(message);
}

/// <summary>The Runtime API failed in a way the runtime cannot recover from; the process should exit.</summary>
internal sealed class RuntimeApiException : InvalidOperationException
{
    public RuntimeApiException(string message, Exception? inner = null) : base(message, inner)
    {
    }
}
