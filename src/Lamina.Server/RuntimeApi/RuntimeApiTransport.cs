using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using System.Threading.Channels;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;

namespace Lamina.Server.RuntimeApi;

/// <summary>The Kestrel endpoint that carries every environment's Runtime API connections.</summary>
internal sealed class RuntimeApiEndPoint : EndPoint
{
    public override string ToString() => "lamina-runtime-api (one socket inside each sandbox)";
}

/// <summary>
/// The sockets Lamina creates inside each sandbox's network namespace, and a Kestrel transport for them. Each
/// connection starts on <see cref="RuntimeApiConnection"/>, which serves the warm invoke's requests itself and hands
/// the connection to Kestrel (through this transport) at the first request it does not serve; Kestrel then serves it
/// like any other connection (HTTP/1.1, keep-alive, chunked bodies, trailers). Each connection carries the environment
/// it belongs to: the identity comes from the socket the runtime connected to, never from anything it sends.
/// </summary>
internal sealed class RuntimeApiTransport : IConnectionListenerFactory, IConnectionListenerFactorySelector, IDisposable
{
    private const string EnvironmentKey = "lamina.environment";

    // Accepted connections wait here for Kestrel's accept loop. Unbounded: each sandbox's listen backlog bounds
    // what one environment can queue, and an environment makes one or two connections in its life.
    private readonly Channel<ConnectionContext> _accepted = Channel.CreateUnbounded<ConnectionContext>(new UnboundedChannelOptions { SingleReader = false });
    private readonly SocketConnectionContextFactory _contextFactory;

    public RuntimeApiTransport(ILoggerFactory loggerFactory)
    {
        Logger = loggerFactory.CreateLogger<RuntimeApiTransport>();
        _contextFactory = new SocketConnectionContextFactory(new SocketConnectionFactoryOptions(), Logger);
    }

    internal ILogger Logger { get; }

    /// <summary>The environment a Runtime API request came from, or null for any other connection.</summary>
    public static object? EnvironmentOf(HttpContext context)
    {
        var items = context.Features.Get<IConnectionItemsFeature>()?.Items;
        return items is not null && items.TryGetValue(EnvironmentKey, out var environment) ? environment : null;
    }

    public void Dispose() => _contextFactory.Dispose();

    public bool CanBind(EndPoint endpoint) => endpoint is RuntimeApiEndPoint;

    public ValueTask<IConnectionListener> BindAsync(EndPoint endpoint, CancellationToken cancellationToken = default) =>
        ValueTask.FromResult<IConnectionListener>(new Listener(this, endpoint));

    /// <summary>Accepts the runtime's connections on <paramref name="listener"/> until it is closed.</summary>
    public Task ServeAsync(Socket listener, object environment) => Task.Run(async () =>
    {
        while (true)
        {
            Socket socket;
            try
            {
                socket = await listener.AcceptAsync();
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                return; // The environment was shut down.
            }
            socket.NoDelay = true;
            if (environment is Invoke.ExecutionEnvironment execution)
            {
                new RuntimeApiConnection(socket, execution, this).Start();
            }
            else
            {
                HandOff(socket, default, environment);
            }
        }
    });

    /// <summary>
    /// Gives Kestrel a connection for the rest of its life; <paramref name="received"/> are bytes already read from it
    /// (the request that <see cref="RuntimeApiConnection"/> does not serve, and whatever followed), which Kestrel reads first.
    /// </summary>
    public void HandOff(Socket socket, ReadOnlyMemory<byte> received, object environment)
    {
        var connection = _contextFactory.Create(socket);
        connection.Items[EnvironmentKey] = environment;
        _accepted.Writer.TryWrite(received.IsEmpty ? connection : new PrefixedConnection(connection, received));
    }

    /// <summary>A socket connection whose input starts with bytes read from it before Kestrel took it over.</summary>
    private sealed class PrefixedConnection : ConnectionContext
    {
        private readonly ConnectionContext _inner;

        public PrefixedConnection(ConnectionContext inner, ReadOnlyMemory<byte> received)
        {
            _inner = inner;
            var input = PipeReader.Create(new PrefixedStream(received, inner.Transport.Input.AsStream()));
            Transport = new DuplexPipe(input, inner.Transport.Output);
        }

        public override string ConnectionId { get => _inner.ConnectionId; set => _inner.ConnectionId = value; }

        public override IFeatureCollection Features => _inner.Features;

        public override IDictionary<object, object?> Items { get => _inner.Items; set => _inner.Items = value; }

        public override IDuplexPipe Transport { get; set; }

        public override CancellationToken ConnectionClosed { get => _inner.ConnectionClosed; set => _inner.ConnectionClosed = value; }

        public override EndPoint? LocalEndPoint { get => _inner.LocalEndPoint; set => _inner.LocalEndPoint = value; }

        public override EndPoint? RemoteEndPoint { get => _inner.RemoteEndPoint; set => _inner.RemoteEndPoint = value; }

        public override void Abort(ConnectionAbortedException abortReason) => _inner.Abort(abortReason);

        public override async ValueTask DisposeAsync()
        {
            await _inner.DisposeAsync();
            await base.DisposeAsync();
        }

        private sealed class DuplexPipe(PipeReader input, PipeWriter output) : IDuplexPipe
        {
            public PipeReader Input { get; } = input;

            public PipeWriter Output { get; } = output;
        }
    }

    /// <summary>Reads <c>prefix</c>, then the inner stream (the slow path's extra copy; the fast path never comes here).</summary>
    private sealed class PrefixedStream(ReadOnlyMemory<byte> prefix, Stream inner) : Stream
    {
        private ReadOnlyMemory<byte> _prefix = prefix;

        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            if (_prefix.IsEmpty)
            {
                return inner.ReadAsync(buffer, cancellationToken);
            }
            var count = Math.Min(buffer.Length, _prefix.Length);
            _prefix[..count].CopyTo(buffer);
            _prefix = _prefix[count..];
            return ValueTask.FromResult(count);
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException(); // pipes read asynchronously

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                inner.Dispose();
            }
            base.Dispose(disposing);
        }
    }

    private sealed class Listener(RuntimeApiTransport transport, EndPoint endpoint) : IConnectionListener
    {
        public EndPoint EndPoint { get; } = endpoint;

        public async ValueTask<ConnectionContext?> AcceptAsync(CancellationToken cancellationToken = default)
        {
            try
            {
                return await transport._accepted.Reader.ReadAsync(cancellationToken);
            }
            catch (Exception e) when (e is ChannelClosedException or OperationCanceledException)
            {
                return null;
            }
        }

        public ValueTask UnbindAsync(CancellationToken cancellationToken = default)
        {
            transport._accepted.Writer.TryComplete();
            return ValueTask.CompletedTask;
        }

        public ValueTask DisposeAsync()
        {
            transport._accepted.Writer.TryComplete();
            return ValueTask.CompletedTask;
        }
    }
}
