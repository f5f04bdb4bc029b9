using Lamina.Server.Protocols;
using Microsoft.AspNetCore.Http.Features;

namespace Lamina.Server.Hosting;

/// <summary>
/// Two protections for every request. Client mistakes in the HTTP framing — a malformed chunked body, a body too slow
/// for the minimum data rate — are answered in AWS's shape with the request id and are not logged as server errors
/// (a client must not be able to flood the log). And a request still sending its body when the server stops is cut
/// off, so a stalled client cannot hold up the shutdown; requests whose bodies are in keep running to completion.
/// </summary>
internal static class RequestGuard
{
    public static IApplicationBuilder UseRequestGuard(this IApplicationBuilder app)
    {
        var stopping = app.ApplicationServices.GetRequiredService<IHostApplicationLifetime>().ApplicationStopping;
        return app.Use(next => context => GuardAsync(context, next, stopping));
    }

    private static async Task GuardAsync(HttpContext context, RequestDelegate next, CancellationToken stopping)
    {
        CancellationTokenRegistration whileReceiving = default;
        if (context.Features.Get<IHttpRequestBodyDetectionFeature>()?.CanHaveBody == true)
        {
            whileReceiving = stopping.Register(static c => ((HttpContext)c!).Abort(), context);
            context.Request.Body = new EndOfBodyStream(context.Request.Body, whileReceiving);
        }
        try
        {
            await next(context);
        }
        catch (BadHttpRequestException bad) when (!context.Response.HasStarted)
        {
            context.Response.Clear();
            context.Response.Headers["x-amzn-RequestId"] = RequestIds.Of(context);
            await new AwsError(bad.StatusCode, "InvalidRequestContentException", bad.Message).ExecuteAsync(context);
        }
        catch (Exception e) when (stopping.IsCancellationRequested && context.RequestAborted.IsCancellationRequested
            && e is OperationCanceledException or IOException or Microsoft.AspNetCore.Connections.ConnectionAbortedException or BadHttpRequestException)
        {
            // Cut off by the shutdown while its body was still coming: nothing to answer, nothing to report.
        }
        finally
        {
            whileReceiving.Dispose();
        }
    }

    /// <summary>Passes a request body through and says once when it has been read to its end.</summary>
    private sealed class EndOfBodyStream(Stream inner, CancellationTokenRegistration onEnd) : Stream
    {
        private CancellationTokenRegistration _onEnd = onEnd;
        private int _ended;

        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            var read = await inner.ReadAsync(buffer, cancellationToken);
            Ended(read, buffer.Length);
            return read;
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override int Read(byte[] buffer, int offset, int count)
        {
            var read = inner.Read(buffer, offset, count);
            Ended(read, count);
            return read;
        }

        private void Ended(int read, int asked)
        {
            if (read == 0 && asked > 0 && Interlocked.Exchange(ref _ended, 1) == 0)
            {
                _onEnd.Dispose();
            }
        }

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
