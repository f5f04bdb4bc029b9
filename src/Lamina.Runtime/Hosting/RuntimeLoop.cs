using Lamina.Runtime.Logging;
using Lamina.Runtime.RuntimeApi;

namespace Lamina.Runtime.Hosting;

/// <summary>Runs one invocation: reads the event from <paramref name="input"/>, writes the response to <paramref name="output"/>.</summary>
internal delegate ValueTask InvocationHandler(Stream input, ILambdaContext context, Stream output);

/// <summary>
/// The runtime's life in an execution environment (LAMBDA.md §5): Init (create the handler; a failure goes to
/// <c>/runtime/init/error</c> and ends the process), then <c>next</c> → handler → <c>response</c> or <c>error</c>,
/// one invocation at a time, until the environment is torn down.
/// </summary>
internal static class RuntimeLoop
{
    /// <summary>Exit code after an init error: the server has the error and discards the environment.</summary>
    public const int InitErrorExitCode = 1;

    public static async Task<int> RunAsync(Func<InvocationHandler> initialize, CancellationToken cancellationToken)
    {
        LambdaConsole.Install();
        using var client = RuntimeApiClient.FromEnvironment();
        using var cancel = cancellationToken.Register(static state => ((RuntimeApiClient)state!).Dispose(), client);

        InvocationHandler handler;
        var initStarted = System.Diagnostics.Stopwatch.GetTimestamp();
        try
        {
            handler = initialize();
        }
        catch (Exception e)
        {
            var reported = Unwrap(e);
            LambdaConsole.WriteRecord(LogLevel.Error, null, reported, toStderr: true);
            client.PostInitError(ErrorReport.ErrorType(reported), ErrorReport.ToJson(reported));
            return InitErrorExitCode;
        }

        double? handlerInitMs = System.Diagnostics.Stopwatch.GetElapsedTime(initStarted).TotalMilliseconds;
        var environment = FunctionEnvironment.FromEnvironment();
        var output = new MemoryStream();
        while (!cancellationToken.IsCancellationRequested)
        {
            InvocationRequest request;
            try
            {
                request = client.Next(handlerInitMs);
                handlerInitMs = null; // told once, on the first next
            }
            catch (RuntimeApiException) when (cancellationToken.IsCancellationRequested)
            {
                break;
            }

            LambdaConsole.RequestId = request.RequestId;
            LambdaConsole.TraceId = request.TraceId;
            // AWS's runtimes expose the trace header to the X-Ray SDK through the environment.
            Environment.SetEnvironmentVariable("_X_AMZN_TRACE_ID", request.TraceId.Length > 0 ? request.TraceId : null);
            var context = new LambdaContext(request, environment, LambdaConsole.Logger, TimeProvider.System);
            // One buffer for all responses, unless a serializer closed it.
            output = output.CanWrite ? output : new MemoryStream();
            output.SetLength(0);
            try
            {
                using var input = new MemoryStream(request.Body, writable: false);
                await handler(input, context, output);
            }
            catch (Exception e)
            {
                var reported = Unwrap(e);
                LambdaConsole.WriteRecord(LogLevel.Error, null, reported, toStderr: true);
                client.PostError(request.RequestId, ErrorReport.ErrorType(reported), ErrorReport.ToJson(reported), thenNext: true);
                continue;
            }
            // The next GET /next goes out with the response (Next reads its answer).
            client.PostResponse(request.RequestId, output.GetBuffer().AsSpan(0, (int)output.Length), thenNext: true);
        }
        return 0;
    }

    /// <summary>Reflection and static-constructor wrappers hide the user's exception; report the one the user threw.</summary>
    private static Exception Unwrap(Exception exception)
    {
        while (exception is System.Reflection.TargetInvocationException { InnerException: { } inner })
        {
            exception = inner;
        }
        return exception;
    }
}
