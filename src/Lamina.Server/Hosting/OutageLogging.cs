using Microsoft.Extensions.Logging.Console;

namespace Lamina.Server.Hosting;

/// <summary>
/// The console logger, with a database outage (or a full disk under SQLite) written as one line per failure: the
/// message and the driver's reason, not its stack. While PostgreSQL is away every background loop (the async queue, S3's notifications, DynamoDB's
/// sweep, the heartbeat) fails once per round; their stacks say nothing the reason does not, and would bury the log.
/// Any other exception keeps its stack.
/// </summary>
[ProviderAlias("Console")] // the console's settings (Logging:Console:LogLevel) still apply to it
internal sealed class OutageLogging(ILoggerProvider inner) : ILoggerProvider, ISupportExternalScope
{
    /// <summary>Puts this around the console provider that <c>AddSimpleConsole</c> registered.</summary>
    public static void Wrap(IServiceCollection services)
    {
        if (services.FirstOrDefault(d => d.ServiceType == typeof(ILoggerProvider) && d.ImplementationType == typeof(ConsoleLoggerProvider)) is not { } console)
        {
            return;
        }
        services.Remove(console);
        services.AddSingleton<ILoggerProvider>(provider => new OutageLogging(ActivatorUtilities.CreateInstance<ConsoleLoggerProvider>(provider)));
    }

    public ILogger CreateLogger(string categoryName) => new Logger(inner.CreateLogger(categoryName));

    public void SetScopeProvider(IExternalScopeProvider scopeProvider) => (inner as ISupportExternalScope)?.SetScopeProvider(scopeProvider);

    public void Dispose() => inner.Dispose();

    private sealed class Logger(ILogger inner) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => inner.BeginScope(state);

        public bool IsEnabled(LogLevel logLevel) => inner.IsEnabled(logLevel);

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            for (var cause = exception; cause is not null; cause = cause.InnerException)
            {
                if (Storage.Sql.CanRetryLater(cause))
                {
                    inner.Log(logLevel, eventId, state, null, (s, _) => $"{formatter(s, exception)} (the database: {cause.Message})");
                    return;
                }
            }
            inner.Log(logLevel, eventId, state, exception, formatter);
        }
    }
}
