using System.Net;
using System.Net.Sockets;
using System.Text;
using Lamina.Server.Invoke;
using Lamina.Server.Lambda;
using Lamina.Server.Logs;
using Lamina.Server.RuntimeApi;
using Microsoft.Extensions.Logging.Abstractions;

namespace Lamina.Tests.RuntimeApi;

/// <summary>
/// The Runtime API's fast path (<see cref="RuntimeApiConnection"/>) against a raw client on a loopback socket pair,
/// in-process (milliseconds): the wire bytes of the warm invoke's three requests, pipelining, and the hand-over to
/// Kestrel (here: the transport's accept queue) of everything else. The real runtimes are tested end to end by the
/// integration tests.
/// </summary>
public sealed class RuntimeApiConnectionTests : IAsyncLifetime, IDisposable
{
    private const string Host = "Host: 127.0.0.1:9001\r\n";
    private readonly RuntimeApiTransport _transport = new(NullLoggerFactory.Instance);
    private readonly InvocationDeadlines _deadlines = new(TimeProvider.System);
    private readonly ExecutionEnvironment _environment;
    private Socket? _listener;
    private Socket? _client;
    private readonly byte[] _received = new byte[64 * 1024];
    private int _receivedLength;

    public RuntimeApiConnectionTests()
    {
        var config = new FunctionConfig
        {
            Name = "f",
            Runtime = "python3.12",
            Role = "arn:aws:iam::000000000000:role/r",
            Handler = "app.handler",
            CodeSha256 = Convert.ToBase64String(new byte[32]),
            CodeSize = 1,
            LastModified = DateTimeOffset.UnixEpoch,
            RevisionId = "r",
            Timeout = 30,
        };
        _environment = new ExecutionEnvironment("0123456789abcdef0123456789abcdef", config, new InvocationLog("/aws/lambda/f", "s"), TimeProvider.System, _deadlines);
    }

    public async Task InitializeAsync()
    {
        _listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        _listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _listener.Listen();
        _ = _transport.ServeAsync(_listener, _environment);
        _client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await _client.ConnectAsync(_listener.LocalEndPoint!);
    }

    public Task DisposeAsync()
    {
        Dispose();
        return Task.CompletedTask;
    }

    public void Dispose()
    {
        _client?.Dispose();
        _listener?.Dispose();
        _transport.Dispose();
        _deadlines.Dispose();
    }

    private static Invocation NewInvocation(string id, string payload = "{\"k\":1}") => new()
    {
        RequestId = id,
        Payload = Encoding.UTF8.GetBytes(payload),
        InvokedFunctionArn = "arn:aws:lambda:us-east-1:000000000000:function:f",
        TraceId = "Root=1-00000000-000000000000000000000000;Parent=0000000000000000;Sampled=0",
        ClientContext = "{\"custom\":\r\n{\"a\":1}}",
    };

    private Task<int> SendAsync(string text) => _client!.SendAsync(Encoding.Latin1.GetBytes(text));

    /// <summary>Reads until <paramref name="count"/> complete responses (head and Content-Length body) are in, and returns them.</summary>
    private async Task<List<(int Status, Dictionary<string, string> Headers, string Body)>> ReadResponsesAsync(int count)
    {
        var responses = new List<(int, Dictionary<string, string>, string)>();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        while (true)
        {
            var text = Encoding.Latin1.GetString(_received, 0, _receivedLength);
            var at = 0;
            responses.Clear();
            while (responses.Count < count)
            {
                var headEnd = text.IndexOf("\r\n\r\n", at, StringComparison.Ordinal);
                if (headEnd < 0)
                {
                    break;
                }
                var lines = text[at..headEnd].Split("\r\n");
                var headers = lines.Skip(1).Select(l => l.Split(':', 2)).ToDictionary(p => p[0].ToLowerInvariant(), p => p[1].Trim());
                var length = int.Parse(headers["content-length"], System.Globalization.CultureInfo.InvariantCulture);
                if (text.Length < headEnd + 4 + length)
                {
                    break;
                }
                responses.Add((int.Parse(lines[0].Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture), headers, text.Substring(headEnd + 4, length)));
                at = headEnd + 4 + length;
            }
            if (responses.Count == count)
            {
                _receivedLength -= at;
                _received.AsSpan(at, _receivedLength).CopyTo(_received);
                return responses;
            }
            var n = await _client!.ReceiveAsync(_received.AsMemory(_receivedLength), timeout.Token);
            Assert.NotEqual(0, n);
            _receivedLength += n;
        }
    }

    [Fact]
    public async Task Next_ThenResponse_EventHeadersAndTheCallerGetsTheBody()
    {
        await SendAsync("GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\n" + Host + "Lamina-Handler-Init-Ms: 12.5\r\n\r\n");
        Assert.Null(await _environment.WaitForInitAsync(TimeSpan.FromSeconds(10), "req-1"));
        var run = _environment.RunAsync(NewInvocation("req-1"));

        var (status, headers, body) = (await ReadResponsesAsync(1))[0];
        Assert.Equal(200, status);
        Assert.Equal("{\"k\":1}", body);
        Assert.Equal("req-1", headers["lambda-runtime-aws-request-id"]);
        Assert.Equal("arn:aws:lambda:us-east-1:000000000000:function:f", headers["lambda-runtime-invoked-function-arn"]);
        Assert.StartsWith("Root=1-", headers["lambda-runtime-trace-id"], StringComparison.Ordinal);
        Assert.Equal("{\"custom\":  {\"a\":1}}", headers["lambda-runtime-client-context"]); // line breaks of the JSON become spaces
        Assert.True(long.Parse(headers["lambda-runtime-deadline-ms"], System.Globalization.CultureInfo.InvariantCulture) > DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
        Assert.Equal(12.5, _environment.ColdStart.HandlerInitMs);

        await SendAsync("POST /2018-06-01/runtime/invocation/req-1/response HTTP/1.1\r\n" + Host + "Content-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello");
        var accepted = (await ReadResponsesAsync(1))[0];
        Assert.Equal(202, accepted.Status);
        Assert.Equal("{\"status\":\"OK\"}", accepted.Body);
        var result = await run.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal("hello", Encoding.UTF8.GetString(result.Body.Span));
        Assert.Equal("text/plain", result.ContentType);
    }

    [Fact]
    public async Task PipelinedResponseAndNext_TheAcceptedGoesOutWithTheNextEvent()
    {
        await SendAsync("GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\n" + Host + "\r\n");
        await _environment.WaitForInitAsync(TimeSpan.FromSeconds(10), "a");
        var first = _environment.RunAsync(NewInvocation("a"));
        Assert.Equal("a", (await ReadResponsesAsync(1))[0].Headers["lambda-runtime-aws-request-id"]);

        // The body arrives in two writes, the next request with its last part.
        await SendAsync("POST /2018-06-01/runtime/invocation/a/response HTTP/1.1\r\n" + Host + "Content-Length: 5\r\n\r\n\"o");
        await Task.Delay(20, CancellationToken.None); // let the server read the partial body first (not a synchronisation: either order must work)
        await SendAsync("k1\"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\n" + Host + "\r\n");
        Assert.Equal("\"ok1\"", Encoding.UTF8.GetString((await first.WaitAsync(TimeSpan.FromSeconds(10))).Body.Span));
        await _environment.PhaseEnded;

        var second = _environment.RunAsync(NewInvocation("b"));
        var responses = await ReadResponsesAsync(2);
        Assert.Equal(202, responses[0].Status);
        Assert.Equal("b", responses[1].Headers["lambda-runtime-aws-request-id"]);
        await SendAsync("POST /2018-06-01/runtime/invocation/b/error HTTP/1.1\r\n" + Host + "Lambda-Runtime-Function-Error-Type: Boom\r\nContent-Length: 0\r\n\r\n");
        var error = await second.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(InvocationOutcome.FunctionError, error.Outcome);
        Assert.Equal("Boom", error.ErrorType);
        Assert.Contains("\"errorType\":\"Boom\"", Encoding.UTF8.GetString(error.Body.Span), StringComparison.Ordinal);
    }

    [Fact]
    public async Task ResponseForAnotherRequest_Is400AndTheInvocationGoesOn()
    {
        await SendAsync("GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\n" + Host + "\r\n");
        await _environment.WaitForInitAsync(TimeSpan.FromSeconds(10), "a");
        var run = _environment.RunAsync(NewInvocation("a"));
        await ReadResponsesAsync(1);

        await SendAsync("POST /2018-06-01/runtime/invocation/zzz/response HTTP/1.1\r\n" + Host + "Content-Length: 1\r\n\r\n1");
        var refused = (await ReadResponsesAsync(1))[0];
        Assert.Equal(400, refused.Status);
        Assert.Contains("InvalidRequestID", refused.Body, StringComparison.Ordinal);
        Assert.False(run.IsCompleted);

        await SendAsync("GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\n" + Host + "\r\n");
        var busy = (await ReadResponsesAsync(1))[0];
        Assert.Equal(403, busy.Status);
        Assert.Contains("InvalidStateTransition", busy.Body, StringComparison.Ordinal);
    }

    [Fact]
    public async Task OtherRequest_GoesToKestrelWithTheBytesReadSoFar()
    {
        var listener = await _transport.BindAsync(new RuntimeApiEndPoint(), CancellationToken.None);
        await SendAsync("GET /2018-06-01/ping HTTP/1.1\r\n" + Host + "\r\nGET /2018-06-01/runtime/invocation/next HTTP/1.1\r\n");

        var connection = await listener.AcceptAsync(CancellationToken.None).AsTask().WaitAsync(TimeSpan.FromSeconds(10), CancellationToken.None);
        Assert.NotNull(connection);
        Assert.Same(_environment, connection.Items["lamina.environment"]);
        var read = new StringBuilder();
        while (!read.ToString().EndsWith("next HTTP/1.1\r\n", StringComparison.Ordinal))
        {
            var result = await connection.Transport.Input.ReadAsync(CancellationToken.None);
            read.Append(Encoding.Latin1.GetString(result.Buffer));
            connection.Transport.Input.AdvanceTo(result.Buffer.End);
        }
        Assert.Equal("GET /2018-06-01/ping HTTP/1.1\r\n" + Host + "\r\nGET /2018-06-01/runtime/invocation/next HTTP/1.1\r\n", read.ToString());

        // What comes later on the socket follows, and what Kestrel writes reaches the runtime.
        await SendAsync(Host + "\r\n");
        var more = await connection.Transport.Input.ReadAsync(CancellationToken.None);
        Assert.Equal(Host + "\r\n", Encoding.Latin1.GetString(more.Buffer));
        await connection.Transport.Output.WriteAsync("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\npong"u8.ToArray(), CancellationToken.None);
        Assert.Equal("pong", (await ReadResponsesAsync(1))[0].Body);
        await connection.DisposeAsync();
    }

    [Fact]
    public async Task RuntimeGoesAwayWhileWaiting_TheInvocationWaitsForTheNextConnection()
    {
        await SendAsync("GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\n" + Host + "\r\n");
        await _environment.WaitForInitAsync(TimeSpan.FromSeconds(10), "a");
        _client!.Dispose();
        // The server notices the close; the invocation started after it must reach the new connection.
        using var again = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await again.ConnectAsync(_listener!.LocalEndPoint!, CancellationToken.None);
        _client = again;
        await Task.Delay(50, CancellationToken.None); // either order (close noticed before or after the invocation) must work
        var run = _environment.RunAsync(NewInvocation("a"));
        await SendAsync("GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\n" + Host + "\r\n");
        Assert.Equal("a", (await ReadResponsesAsync(1))[0].Headers["lambda-runtime-aws-request-id"]);
        await SendAsync("POST /2018-06-01/runtime/invocation/a/response HTTP/1.1\r\n" + Host + "Content-Length: 2\r\nConnection: close\r\n\r\nok");
        var accepted = (await ReadResponsesAsync(1))[0];
        Assert.Equal("close", accepted.Headers["connection"]);
        Assert.Equal("ok", Encoding.UTF8.GetString((await run.WaitAsync(TimeSpan.FromSeconds(10))).Body.Span));
        _client = null;
    }

    [Fact]
    public async Task Shutdown_WaitingNextAnswers500()
    {
        await SendAsync("GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\n" + Host + "\r\n");
        await _environment.WaitForInitAsync(TimeSpan.FromSeconds(10), "a");
        _environment.CloseRuntimeApi();
        var closed = (await ReadResponsesAsync(1))[0];
        Assert.Equal(500, closed.Status);
        Assert.Contains("shutting down", closed.Body, StringComparison.Ordinal);
    }
}
