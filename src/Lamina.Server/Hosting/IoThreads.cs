using System.IO.Pipelines;
using Microsoft.AspNetCore.Http.Features;

namespace Lamina.Server.Hosting;

/// <summary>
/// Where requests run. Socket completions run on the I/O (epoll) threads themselves (.NET's
/// <c>DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS</c>) and Kestrel runs a request on the thread its bytes arrived on
/// (<c>UnsafePreferInlineScheduling</c>): a warm invoke then goes from the caller's request to the runtime and back
/// without a single thread hand-off. On this machine each hand-off to a sleeping worker cost 5–10 µs of CPU (a futex
/// wake and a context switch), and a warm invoke made five; at one connection the server's CPU per invoke halved
/// (issue #19, docs/BENCHMARKS.md). The price is that code on an I/O thread must never block, so
/// <see cref="UseIoThreadGuard"/> sends every request except Invoke to the thread pool before anything of it runs, and
/// brings it back there whenever one of its body reads or writes completed on an I/O thread. The warm path itself
/// blocks nowhere (no database, no disk, no process start); the cold path leaves for the thread pool
/// (<see cref="Invoke.Invoker"/>). <c>LAMINA_INLINE_IO=0</c> turns all of this off.
/// </summary>
internal static class IoThreads
{
    private const string InlineCompletionsVariable = "DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS";

    /// <summary>True when socket completions and Kestrel's requests run on the I/O threads.</summary>
    public static bool Inline { get; private set; }

    /// <summary>Turns inline I/O on (unless <c>LAMINA_INLINE_IO=0</c>); must run before the process opens its first socket.</summary>
    public static void Configure(IWebHostBuilder webHost)
    {
        Inline = Environment.GetEnvironmentVariable("LAMINA_INLINE_IO") != "0";
        if (!Inline)
        {
            return;
        }
        // Read once, when the socket engine first starts: this process only (sandboxes get an explicit environment).
        Environment.SetEnvironmentVariable(InlineCompletionsVariable, "1");
        webHost.UseSockets(sockets =>
        {
            sockets.UnsafePreferInlineScheduling = true;
            // Read a request into a pooled buffer at once rather than first waiting for it with a 1-byte peek:
            // one system call fewer per request, 4 KB held per idle keep-alive connection.
            sockets.WaitForDataBeforeAllocatingBuffer = false;
        });
    }

    /// <summary>The first middleware: everything but Invoke continues on the thread pool, for good.</summary>
    public static IApplicationBuilder UseIoThreadGuard(this IApplicationBuilder app) =>
        Inline ? app.Use(static (context, next) => IsInvoke(context.Request) ? next(context) : OnThreadPoolAsync(context, next)) : app;

    /// <summary>Whether the caller is on a thread that must not block (an I/O thread, not a thread-pool worker).</summary>
    public static bool OnIoThread => Inline && !Thread.CurrentThread.IsThreadPoolThread;

    /// <summary>Continues on the thread pool when on an I/O thread (completes at once otherwise).</summary>
    public static ThreadPoolAwaitable LeaveIoThreadAsync() => default;

    /// <summary>Awaiting it moves to a thread-pool worker unless already on one (or inline I/O is off).</summary>
    public readonly struct ThreadPoolAwaitable : System.Runtime.CompilerServices.ICriticalNotifyCompletion
    {
        public ThreadPoolAwaitable GetAwaiter() => this;

        public bool IsCompleted => !OnIoThread;

        public void GetResult()
        {
        }

        public void OnCompleted(Action continuation) => ThreadPool.QueueUserWorkItem(static c => c(), continuation, preferLocal: false);

        public void UnsafeOnCompleted(Action continuation) => ThreadPool.UnsafeQueueUserWorkItem(static c => c(), continuation, preferLocal: false);
    }

    /// <summary>
    /// An Invoke with a body of known size within the synchronous limit (a larger or chunked one is refused or
    /// buffered, which is not the warm path's business): RequestResponse and Event alike; the handler leaves the I/O
    /// thread itself for a cold start and for large payloads.
    /// </summary>
    private static bool IsInvoke(HttpRequest request) =>
        HttpMethods.IsPost(request.Method) && request.ContentLength is <= Lambda.InvokeApi.MaxSyncPayloadBytes
        && request.Path.Value is { } path && path.StartsWith("/2015-03-31/functions/", StringComparison.Ordinal)
        && (path.EndsWith("/invocations", StringComparison.Ordinal) || path.EndsWith("/invocations/", StringComparison.Ordinal));

    private static async Task OnThreadPoolAsync(HttpContext context, RequestDelegate next)
    {
        if (context.Features.Get<IHttpRequestBodyDetectionFeature>()?.CanHaveBody == true)
        {
            context.Request.Body = new ThreadPoolStream(context.Request.Body);
        }
        if (context.Features.Get<IHttpResponseBodyFeature>() is { } responseBody)
        {
            context.Features.Set<IHttpResponseBodyFeature>(new ThreadPoolResponseBody(responseBody));
        }
        await LeaveIoThreadAsync();
        await next(context);
    }

    /// <summary>A body stream whose awaits end on the thread pool.</summary>
    private sealed class ThreadPoolStream(Stream inner) : Stream
    {
        public override bool CanRead => inner.CanRead;
        public override bool CanSeek => inner.CanSeek;
        public override bool CanWrite => inner.CanWrite;
        public override long Length => inner.Length;
        public override long Position { get => inner.Position; set => inner.Position = value; }

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            var read = await inner.ReadAsync(buffer, cancellationToken);
            await LeaveIoThreadAsync();
            return read;
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            await inner.WriteAsync(buffer, cancellationToken);
            await LeaveIoThreadAsync();
        }

        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override async Task FlushAsync(CancellationToken cancellationToken)
        {
            await inner.FlushAsync(cancellationToken);
            await LeaveIoThreadAsync();
        }

        public override int Read(byte[] buffer, int offset, int count) => inner.Read(buffer, offset, count);
        public override void Write(byte[] buffer, int offset, int count) => inner.Write(buffer, offset, count);
        public override void Flush() => inner.Flush();
        public override long Seek(long offset, SeekOrigin origin) => inner.Seek(offset, origin);
        public override void SetLength(long value) => inner.SetLength(value);
    }

    /// <summary>The response body (stream and pipe) of a request on the thread pool: its awaits end there too.</summary>
    private sealed class ThreadPoolResponseBody(IHttpResponseBodyFeature inner) : IHttpResponseBodyFeature
    {
        private Stream? _stream;
        private PipeWriter? _writer;

        public Stream Stream => _stream ??= new ThreadPoolStream(inner.Stream);

        public PipeWriter Writer => _writer ??= new ThreadPoolPipeWriter(inner.Writer);

        public void DisableBuffering() => inner.DisableBuffering();

        public async Task StartAsync(CancellationToken cancellationToken = default)
        {
            await inner.StartAsync(cancellationToken);
            await LeaveIoThreadAsync();
        }

        public async Task SendFileAsync(string path, long offset, long? count, CancellationToken cancellationToken = default)
        {
            await inner.SendFileAsync(path, offset, count, cancellationToken);
            await LeaveIoThreadAsync();
        }

        public async Task CompleteAsync()
        {
            await inner.CompleteAsync();
            await LeaveIoThreadAsync();
        }
    }

    private sealed class ThreadPoolPipeWriter(PipeWriter inner) : PipeWriter
    {
        public override bool CanGetUnflushedBytes => inner.CanGetUnflushedBytes;
        public override long UnflushedBytes => inner.UnflushedBytes;

        public override void Advance(int bytes) => inner.Advance(bytes);
        public override Memory<byte> GetMemory(int sizeHint = 0) => inner.GetMemory(sizeHint);
        public override Span<byte> GetSpan(int sizeHint = 0) => inner.GetSpan(sizeHint);
        public override void CancelPendingFlush() => inner.CancelPendingFlush();
        public override void Complete(Exception? exception = null) => inner.Complete(exception);

        public override async ValueTask CompleteAsync(Exception? exception = null)
        {
            await inner.CompleteAsync(exception);
            await LeaveIoThreadAsync();
        }

        public override async ValueTask<FlushResult> FlushAsync(CancellationToken cancellationToken = default)
        {
            var result = await inner.FlushAsync(cancellationToken);
            await LeaveIoThreadAsync();
            return result;
        }

        public override async ValueTask<FlushResult> WriteAsync(ReadOnlyMemory<byte> source, CancellationToken cancellationToken = default)
        {
            var result = await inner.WriteAsync(source, cancellationToken);
            await LeaveIoThreadAsync();
            return result;
        }
    }
}
