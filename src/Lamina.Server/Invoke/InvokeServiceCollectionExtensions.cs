using Lamina.Server.RuntimeApi;
using Microsoft.AspNetCore.Connections;

namespace Lamina.Server.Invoke;

internal static class InvokeServiceCollectionExtensions
{
    /// <summary>Environments, the Runtime API transport and the invoke path.</summary>
    public static IServiceCollection AddInvoke(this IServiceCollection services)
    {
        // Registered first so it stops last: environments' final lines are written before the store closes.
        services.AddSingleton<Logs.LogStore>();
        services.AddHostedService(static sp => sp.GetRequiredService<Logs.LogStore>());
        services.AddSingleton<Diagnostics.Tracing>();
        services.AddSingleton<Security.AccessKeys>();
        services.AddHostedService(static sp => sp.GetRequiredService<Security.AccessKeys>());
        services.AddSingleton<RuntimeApiTransport>();
        // Kestrel asks every registered transport whether it can bind an endpoint; ours takes only RuntimeApiEndPoint.
        services.AddSingleton<IConnectionListenerFactory>(static sp => sp.GetRequiredService<RuntimeApiTransport>());
        services.AddSingleton<EnvironmentPool>();
        services.AddHostedService(static sp => sp.GetRequiredService<EnvironmentPool>());
        services.AddSingleton<ConcurrencyLimiter>();
        services.AddSingleton<Invoker>();
        // Metrics (GET /metrics): instruments fed by the invoke path, gauges read at scrape time.
        services.AddSingleton<Diagnostics.LaminaMetrics>(static sp =>
        {
            var metrics = new Diagnostics.LaminaMetrics();
            // What is deleted leaves /metrics (and the cap on functions' label sets).
            var functions = sp.GetRequiredService<Lambda.FunctionRegistry>();
            functions.Deleted += metrics.ForgetFunction;
            functions.Retired += metrics.ForgetRetired;
            return metrics;
        });
        services.AddSingleton<Diagnostics.NodeMetrics>();
        // The durable queue of Event invocations and its dispatcher (stopped before the pool: registered after it).
        services.AddSingleton<Async.AsyncEventStore>();
        services.AddSingleton<Async.AsyncDispatcher>();
        services.AddHostedService(static sp => sp.GetRequiredService<Async.AsyncDispatcher>());
        services.AddSingleton<Sqs.QueueStore>();
        services.AddHostedService(static sp => sp.GetRequiredService<Sqs.QueueStore>());
        services.AddSingleton<Lambda.EventSourceMappings>();
        services.AddHostedService(static sp => sp.GetRequiredService<Lambda.EventSourceMappings>());
        services.AddSingleton<Sns.TopicStore>();
        services.AddHostedService(static sp => sp.GetRequiredService<Sns.TopicStore>());
        services.AddSingleton<EventBridge.EventRules>();
        services.AddHostedService(static sp => sp.GetRequiredService<EventBridge.EventRules>());
        // Log subscription filters: matches from the log store's writer to functions through the async queue.
        services.AddSingleton<Logs.LogSubscriptions>();
        services.AddHostedService(static sp => sp.GetRequiredService<Logs.LogSubscriptions>());
        return services;
    }
}
