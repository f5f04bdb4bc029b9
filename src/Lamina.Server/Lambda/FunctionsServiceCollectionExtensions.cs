using Lamina.Server.Diagnostics;
using Lamina.Server.Storage;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace Lamina.Server.Lambda;

internal static class FunctionsServiceCollectionExtensions
{
    /// <summary>
    /// The function control plane's state: the database, the code store and the in-memory registries of functions
    /// (with their versions and aliases) and layers, loaded by a startup step that runs before the server answers.
    /// </summary>
    public static IServiceCollection AddFunctions(this IServiceCollection services)
    {
        services.TryAddSingleton(TimeProvider.System);
        services.AddSingleton<Database>();
        services.AddSingleton<LambdaStore>();
        services.AddSingleton<CodeStore>();
        services.AddSingleton<FunctionRegistry>();
        services.AddSingleton<LayerRegistry>();
        services.AddHostedService<FunctionsStartup>();
        services.AddHostedService<CodeCollector>();
        // A cluster node's heartbeat and its ear for the other nodes' changes (issue #25); idle on a single machine.
        services.AddSingleton<ClusterNode>();
        services.AddHostedService(static sp => sp.GetRequiredService<ClusterNode>());
        services.AddSingleton<LeaseForwarder>();
        return services;
    }
}

/// <summary>
/// Opens the database (creating or migrating the schema), clears interrupted uploads from the code store and loads
/// the registry. It runs in <see cref="IHostedLifecycleService.StartingAsync"/>, before any hosted service's
/// StartAsync, and so before Kestrel listens: no request ever sees an empty registry.
/// </summary>
internal sealed partial class FunctionsStartup(
    Database database, CodeStore codeStore, FunctionRegistry registry, LayerRegistry layers, ClusterNode cluster, ILogger<FunctionsStartup> logger) : IHostedLifecycleService
{
    public async Task StartingAsync(CancellationToken cancellationToken)
    {
        database.Initialize();
        var removed = codeStore.Initialize() + codeStore.InitializeOpt();
        if (removed > 0)
        {
            Log.RemovedInterruptedUploads(logger, removed, codeStore.Root);
        }
        var count = registry.Load();
        layers.Load();
        registry.AttachCluster(cluster);
        layers.AttachCluster(cluster);

        // A tree can be missing if someone cleaned the directory by hand; the zip is the source of truth. Merged
        // layer trees are (re)built here too, so that cold starts only look them up.
        foreach (var config in registry.ListEntries().SelectMany(static e => e.AllConfigs))
        {
            if (!await codeStore.EnsureExtractedAsync(config.CodeHashHex, cancellationToken))
            {
                Log.CodeMissing(logger, config.Name, config.CodeHashHex, codeStore.Root);
            }
            if (config.Layers.Count > 0 && await codeStore.EnsureLayersAsync(config.Layers, cancellationToken) is { } layerError)
            {
                Log.LayersMissing(logger, config.Name, config.Version, layerError);
            }
        }
        Log.Loaded(logger, count, database.SharedDescription);
    }

    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StoppingAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    private static partial class Log
    {
        [LoggerMessage(EventIds.FunctionsLoaded, LogLevel.Information, "Loaded {Count} functions from {Path}")]
        public static partial void Loaded(ILogger logger, int count, string path);

        [LoggerMessage(EventIds.InterruptedUploadsRemoved, LogLevel.Information, "Removed {Count} interrupted uploads from {Path}")]
        public static partial void RemovedInterruptedUploads(ILogger logger, int count, string path);

        [LoggerMessage(EventIds.FunctionCodeMissing, LogLevel.Error, "Code of function {Name} ({Hash}) is missing from {Path}; invocations will fail until its code is updated")]
        public static partial void CodeMissing(ILogger logger, string name, string hash, string path);

        [LoggerMessage(EventIds.FunctionLayersMissing, LogLevel.Error, "Layers of function {Name} version {Version} are unusable: {Reason}; its invocations will fail until its Layers are updated")]
        public static partial void LayersMissing(ILogger logger, string name, string version, string reason);
    }
}
