using Lamina.Server.Functions;
using Lamina.Server.Hosting;
using Lamina.Server.Sandbox;
using Microsoft.Extensions.Options;

namespace Lamina.Server.Invoke;

/// <summary>
/// Runs an invocation: a warm environment if one is idle (no database, no disk, no process start), else a cold
/// start. Expected failures come back as values; only "no sandbox can be made" is reported as a platform error.
/// </summary>
internal sealed partial class Invoker(EnvironmentPool pool, IOptions<LaminaOptions> options, ILogger<Invoker> logger)
{
    private readonly TimeSpan _initTimeout = options.Value.InitTimeout;

    public async Task<InvokeOutcome> InvokeAsync(FunctionConfig config, Invocation invocation, bool wantTail)
    {
        var environment = pool.TryTakeIdle(config);
        if (environment is null)
        {
            try
            {
                environment = pool.Start(config, invocation.RequestId);
            }
            catch (EntrypointException e)
            {
                return new InvokeOutcome(InvocationResult.PlatformError("Runtime.InvalidEntrypoint", $"RequestId: {invocation.RequestId} Error: {e.Message}"), null);
            }
            catch (SandboxException e)
            {
                Log.SandboxStartFailed(logger, config.Name, e.Message);
                return new InvokeOutcome(null, null, $"The execution environment could not be created: {e.Message}");
            }

            var initError = await environment.WaitForInitAsync(_initTimeout, invocation.RequestId);
            if (initError is not null)
            {
                environment.ReportFailedInit(invocation.RequestId);
                pool.Discard(environment);
                return new InvokeOutcome(initError, wantTail ? environment.Log.Tail() : null);
            }
        }

        var result = await environment.RunAsync(invocation);
        var tail = wantTail ? environment.Log.Tail() : null;
        pool.Return(environment);
        return new InvokeOutcome(result, tail);
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = Diagnostics.EventIds.SandboxStartFailed, Level = LogLevel.Error, Message = "Could not start an environment for {Function}: {Reason}")]
        public static partial void SandboxStartFailed(ILogger logger, string function, string reason);
    }
}

/// <summary>The result of an invocation, its log tail if asked for, or a platform failure message.</summary>
internal readonly record struct InvokeOutcome(InvocationResult? Result, string? LogTail, string? PlatformFailure = null);
