// The floors Lamina's warm invoke is compared with (bench/compare.py warm), on the I/O settings Lamina uses (socket
// completions and requests on the I/O threads, Hosting/IoThreads.cs), so that the difference is Lamina's own work:
//   dotnet KestrelFloor.dll --urls http://127.0.0.1:PORT                    a bare Kestrel echo (POST body back)
//   dotnet KestrelFloor.dll --urls http://127.0.0.1:PORT --relay ECHO_PORT  the same, each body sent to a byte-echo
//       process over a kept-alive loopback connection and its answer returned: the two exchanges of a warm invoke
//       (caller ↔ server, server ↔ runtime) with nothing else.
using System.Buffers;
using System.Collections.Concurrent;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;

Environment.SetEnvironmentVariable("DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS", "1");
var relayPort = Array.IndexOf(args, "--relay") is var at and >= 0 ? int.Parse(args[at + 1], System.Globalization.CultureInfo.InvariantCulture) : 0;
// --processes N: the echo processes listen on ECHO_PORT … ECHO_PORT+N-1, one connection each (as each environment is a
// process of its own); the relay's connections go to them in turn.
var processes = Array.IndexOf(args, "--processes") is var p and >= 0 ? int.Parse(args[p + 1], System.Globalization.CultureInfo.InvariantCulture) : 1;
var connected = 0;
var builder = WebApplication.CreateSlimBuilder(args);
builder.Logging.ClearProviders();
builder.WebHost.UseSockets(sockets =>
{
    sockets.UnsafePreferInlineScheduling = true;
    sockets.WaitForDataBeforeAllocatingBuffer = false;
});
builder.WebHost.ConfigureKestrel(kestrel => kestrel.AddServerHeader = false);
var app = builder.Build();
var runtimes = new ConcurrentBag<Socket>(); // idle connections to the echo process, one per request in flight
app.Run(async context =>
{
    var reader = context.Request.BodyReader;
    ReadResult read;
    while (!(read = await reader.ReadAsync()).IsCompleted)
    {
        reader.AdvanceTo(read.Buffer.Start, read.Buffer.End);
    }
    var body = read.Buffer;
    context.Response.ContentType = "application/json";
    context.Response.ContentLength = body.Length;
    if (relayPort == 0)
    {
        foreach (var segment in body)
        {
            await context.Response.BodyWriter.WriteAsync(segment);
        }
        reader.AdvanceTo(body.End);
        return;
    }
    if (!runtimes.TryTake(out var runtime))
    {
        runtime = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await runtime.ConnectAsync(new IPEndPoint(IPAddress.Loopback, relayPort + (Interlocked.Increment(ref connected) % processes)));
    }
    var length = (int)body.Length;
    var memory = context.Response.BodyWriter.GetMemory(length);
    body.CopyTo(memory.Span);
    reader.AdvanceTo(body.End);
    await runtime.SendAsync(memory[..length], SocketFlags.None);
    for (var received = 0; received < length;)
    {
        received += await runtime.ReceiveAsync(memory[received..length], SocketFlags.None);
    }
    runtimes.Add(runtime);
    context.Response.BodyWriter.Advance(length);
    await context.Response.BodyWriter.FlushAsync();
});
await app.RunAsync();
