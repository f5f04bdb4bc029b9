using System.Net;
using System.Net.Sockets;
using System.Threading.Channels;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;

namespace Lamina.Server.RuntimeApi;

/// <summary>The Kestrel endpoint that carries every environment's Runtime API connections.</summary>
internal sealed class RuntimeApiEndPoint : EndPoint
{
    public override string ToString() => "lamina-runtime-api (one socket inside each sandbox)";
}

/// <summary>
/// A Kestrel transport whose connections come from the sockets Lamina creates inside each sandbox's network
/// namespace. Kestrel serves them like any other connection (HTTP/1.1, keep-alive, chunked bodies, trailers),
/// and each connection carries the environment it belongs to: the identity comes from the socket the runtime
/// connected to, never from anything it sends.
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
        _contextFactory = new SocketConnectionContextFactory(new SocketConnectionFactoryOptions(), loggerFactory.CreateLogger<RuntimeApiTransport>());
    }

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
            var connection = _contextFactory.Create(socket);
            connection.Items[EnvironmentKey] = environment;
            _accepted.Writer.TryWrite(connection);
        }
    });

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
