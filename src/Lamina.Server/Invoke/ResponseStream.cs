using System.Buffers;
using System.IO.Pipelines;

namespace Lamina.Server.Invoke;

/// <summary>
/// A streamed response on its way from the runtime to a caller that streams (InvokeWithResponseStream, a function URL
/// in <c>RESPONSE_STREAM</c> mode). The Runtime API endpoint that reads the runtime's chunked POST writes each piece
/// into <see cref="Body"/> as it arrives; the caller reads it and forwards it at once, so the first bytes reach the
/// client while the function is still writing. The pipe is bounded: a caller that reads slowly slows the runtime's
/// POST down rather than growing the server's memory. No disk, no database: this is the warm path.
/// </summary>
internal sealed class ResponseStream
{
    /// <summary>Lambda's soft limit on a streamed response (20 MiB); past it the stream ends with Function.ResponseSizeTooLarge.</summary>
    public const long MaxBytes = 20L * 1024 * 1024;

    // The runtime writes ahead of a slow reader by at most this much (then its POST waits).
    private const long PauseWriterThreshold = 1024 * 1024;

    private readonly TaskCompletionSource<string> _started = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public Pipe Body { get; } = new(new PipeOptions(pauseWriterThreshold: PauseWriterThreshold, resumeWriterThreshold: PauseWriterThreshold / 2,
        useSynchronizationContext: false));

    /// <summary>Completes with the response's content type when the runtime starts a streamed response.</summary>
    public Task<string> Started => _started.Task;

    /// <summary>The runtime began its streamed POST (once per invocation: the Runtime API checked that).</summary>
    public void Start(string contentType) => _started.TrySetResult(contentType);

    /// <summary>
    /// Wakes a reader waiting on <see cref="Body"/> when the invocation ended some other way (a timeout, a crash): the
    /// reader sees a cancelled read and stops.
    /// </summary>
    public void Watch(Invocation invocation) =>
        invocation.Completion.ContinueWith(static (_, state) => ((ResponseStream)state!).Body.Reader.CancelPendingRead(), this,
            CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);

    /// <summary>
    /// Hands the body to <paramref name="forward"/> as it arrives, until the runtime ends it, the invocation ends some
    /// other way (timeout, crash: what was read is forwarded, the rest never comes), or the client goes away
    /// (<paramref name="aborted"/>: the runtime's remaining bytes are then dropped by the Runtime API endpoint).
    /// </summary>
    public async Task ForwardAsync<TState>(Invocation invocation, TState state, Func<TState, ReadOnlySequence<byte>, ValueTask> forward, CancellationToken aborted)
    {
        var reader = Body.Reader;
        try
        {
            while (!aborted.IsCancellationRequested)
            {
                var read = await reader.ReadAsync(CancellationToken.None);
                var buffer = read.Buffer;
                if (!buffer.IsEmpty)
                {
                    await forward(state, buffer);
                }
                reader.AdvanceTo(buffer.End);
                if (read.IsCompleted || (read.IsCanceled && invocation.IsCompleted))
                {
                    return;
                }
            }
        }
        finally
        {
            await reader.CompleteAsync();
        }
    }
}
