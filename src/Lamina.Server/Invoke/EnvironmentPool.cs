using System.Collections.Concurrent;
using System.Diagnostics;
using Lamina.Server.Functions;
using Lamina.Server.Hosting;
using Lamina.Server.Logs;
using Lamina.Server.RuntimeApi;
using Lamina.Server.Sandbox;
using Microsoft.Extensions.Options;

namespace Lamina.Server.Invoke;

/// <summary>
/// The execution environments of every function configuration: idle ones wait on a stack (LIFO keeps the warmest
/// in use), busy ones belong to their invocation. Starting environments is parallel (no lock is held while a sandbox
/// starts). One heartbeat sweeps idle environments past their lifetime. Stopping the server stops them all.
/// </summary>
internal sealed partial class EnvironmentPool : IHostedService, IDisposable
{
    private readonly ConcurrentDictionary<FunctionConfig, Slot> _slots = new(ReferenceEqualityComparer.Instance);
    private readonly SandboxLauncher? _launcher;
    private readonly string? _sandboxError;
    private readonly RuntimeApiTransport _transport;
    private readonly LaminaOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger<EnvironmentPool> _logger;
    private readonly ILogger _functionLogger;
    private readonly Functions.FunctionRegistry _registry;
    private readonly Storage.CodeStore _codeStore;
    private readonly CancellationTokenSource _stopping = new();
    private readonly IHostApplicationLifetime _lifetime;
    private readonly Cgroups? _cgroups;
    private Task? _heartbeat;
    private readonly Lazy<Task> _stopAll;

    public EnvironmentPool(IOptions<LaminaOptions> options, RuntimeApiTransport transport, FunctionRegistry registry, Storage.CodeStore codeStore, TimeProvider time, IHostApplicationLifetime lifetime, ILoggerFactory loggers)
    {
        _lifetime = lifetime;
        _stopAll = new Lazy<Task>(StopAllAsync);
        _options = options.Value;
        _transport = transport;
        _registry = registry;
        _codeStore = codeStore;
        _time = time;
        _logger = loggers.CreateLogger<EnvironmentPool>();
        _functionLogger = loggers.CreateLogger("Lamina.Function");
        _sandboxError = SandboxLauncher.CheckPrerequisites();
        if (_sandboxError is null)
        {
            try
            {
                _cgroups = new Cgroups(Cgroups.InstanceFor(_options.DataDirectory));
                _launcher = new SandboxLauncher(_cgroups, _options.DataDirectory);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                _sandboxError = $"cgroups are not usable ({e.Message}); Lamina must run as root to create them";
            }
        }
        registry.Retired += OnRetired;
    }

    /// <summary>An idle environment of <paramref name="config"/>, or null if none is warm.</summary>
    public ExecutionEnvironment? TryTakeIdle(FunctionConfig config)
    {
        if (!_slots.TryGetValue(config, out var slot))
        {
            return null;
        }
        lock (slot)
        {
            while (slot.Idle.TryPop(out var environment))
            {
                if (environment.IsUsable)
                {
                    return environment;
                }
            }
        }
        return null;
    }

    /// <summary>
    /// Starts a new environment for <paramref name="config"/> (a cold start). The sandbox is running when this
    /// returns; its Init may still be in progress. Fails with a <see cref="SandboxException"/> when no sandbox can be made.
    /// </summary>
    public async Task<ExecutionEnvironment> StartAsync(FunctionConfig config, string requestId)
    {
        if (_launcher is null)
        {
            throw new SandboxException(_sandboxError ?? "sandboxes are unavailable");
        }
        var codeDirectory = _codeStore.GetCodeDirectory(config);
        var optDirectory = _codeStore.GetOptDirectory(config); // the configuration's layers, merged when it was written
        if (!RuntimeCatalog.TryGetCommand(config.Runtime, codeDirectory, optDirectory, out var command, out var entrypointError))
        {
            throw new EntrypointException(entrypointError);
        }

        // Lambda's Init order: external extensions first (started by a small script that waits for them to
        // register), then the runtime; managed runtimes may be wrapped by AWS_LAMBDA_EXEC_WRAPPER.
        if (config.EnvironmentVariables.TryGetValue("AWS_LAMBDA_EXEC_WRAPPER", out var wrapper) && !RuntimeCatalog.IsCustom(config.Runtime))
        {
            command = [wrapper, .. command];
        }
        var withExtensions = HasExtensions(optDirectory);
        if (withExtensions)
        {
            command = ["/bin/bash", "/var/runtime/lamina/init-extensions.sh", .. command];
        }

        var id = Guid.NewGuid().ToString("N");
        var log = new InvocationLog(config.LogGroupName, InvocationLog.StreamName(_time.GetUtcNow(), config.Version, id));
        var environment = new ExecutionEnvironment(id, config, log, _time) { InitRequestId = requestId, AccountId = _options.AccountId };
        var spec = new SandboxSpec
        {
            Id = id,
            CodeDirectory = codeDirectory,
            OptDirectory = optDirectory,
            RuntimesDirectory = _options.RuntimesDirectory,
            Command = command,
            Environment = EnvironmentVariables.For(config, log, _options),
            MemoryMb = config.MemorySize,
            OutboundNetwork = HasOutboundNetwork(config),
            TmpSizeMb = config.EphemeralStorageSize,
        };
        var functionName = config.Name;
        var sandbox = await _launcher.LaunchAsync(spec, line =>
        {
            if (log.AppendOutput(line))
            {
                environment.Telemetry?.PublishLine(line);
                LogFunctionOutput(_functionLogger, functionName, line);
            }
        }, withExtensions ? line =>
        {
            // Extensions' lines are in the environment's log too, but reach telemetry as "extension" records.
            if (log.AppendOutput(line))
            {
                environment.Telemetry?.PublishExtensionLine(line);
                LogFunctionOutput(_functionLogger, functionName, line);
            }
        } : null);
        environment.Attach(sandbox);
        _ = _transport.ServeAsync(sandbox.Listener, environment);

        var slot = _slots.GetOrAdd(config, static _ => new Slot());
        lock (slot)
        {
            slot.All.Add(environment);
            if (slot.Retired)
            {
                environment.MarkDead();
            }
        }
        _ = sandbox.Exited.ContinueWith((_, state) => Forget((ExecutionEnvironment)state!), environment, CancellationToken.None, TaskContinuationOptions.None, TaskScheduler.Default);
        return environment;
    }

    /// <summary>
    /// Outbound network is on, as on Lambda, unless the server turns it off for all functions or the function sets
    /// <c>LAMINA_NETWORK=none</c> (part of its configuration, so versions keep their choice).
    /// </summary>
    private bool HasOutboundNetwork(FunctionConfig config) =>
        _options.FunctionNetwork && !(config.EnvironmentVariables.TryGetValue(NetworkVariable, out var network) && network == "none");

    /// <summary>The function variable that turns its outbound network off (<c>none</c>).</summary>
    public const string NetworkVariable = "LAMINA_NETWORK";

    private static bool HasExtensions(string? optDirectory)
    {
        var directory = optDirectory is null ? null : Path.Combine(optDirectory, "extensions");
        return directory is not null && Directory.Exists(directory) && Directory.EnumerateFiles(directory).Any();
    }

    /// <summary>Gives an environment back after an invocation: warm if it can serve again, stopped otherwise.</summary>
    public void Return(ExecutionEnvironment environment)
    {
        if (_slots.TryGetValue(environment.Config, out var slot) && environment.IsUsable)
        {
            lock (slot)
            {
                if (!slot.Retired && !_stopping.IsCancellationRequested)
                {
                    environment.IdleSinceTimestamp = Stopwatch.GetTimestamp();
                    slot.Idle.Push(environment);
                    return;
                }
            }
        }
        _ = StopAsync(environment);
    }

    /// <summary>Stops an environment that did not work out (init failed, timed out…).</summary>
    public void Discard(ExecutionEnvironment environment)
    {
        environment.MarkDead();
        _ = StopAsync(environment);
    }

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        if (_sandboxError is not null)
        {
            Log.SandboxUnavailable(_logger, _sandboxError);
        }
        if (_cgroups is not null)
        {
            // Groups of a previous run that was killed; their processes died with it (--die-with-parent).
            await _cgroups.RemoveLeftoversAsync();
        }
        // Environments stop as soon as shutdown begins: their runtimes' pending /next requests end, so the web
        // server's own graceful stop does not wait for long polls that would never finish.
        _lifetime.ApplicationStopping.Register(() => _ = _stopAll.Value);
        _heartbeat = HeartbeatAsync();
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        await _stopAll.Value;
        if (_heartbeat is not null)
        {
            await _heartbeat;
        }
    }

    private async Task StopAllAsync()
    {
        await _stopping.CancelAsync();
        var all = new List<ExecutionEnvironment>();
        foreach (var slot in _slots.Values)
        {
            lock (slot)
            {
                slot.Retired = true;
                slot.Idle.Clear();
                all.AddRange(slot.All);
            }
        }
        await Task.WhenAll(all.Select(StopAsync));
        _cgroups?.RemoveInstance();
    }

    public void Dispose()
    {
        _launcher?.Dispose();
        _stopping.Dispose();
    }

    private void OnRetired(FunctionConfig config)
    {
        if (!_slots.TryGetValue(config, out var slot))
        {
            return;
        }
        List<ExecutionEnvironment> idle;
        lock (slot)
        {
            slot.Retired = true;
            idle = [.. slot.Idle];
            slot.Idle.Clear();
            foreach (var environment in slot.All)
            {
                environment.MarkDead(); // Busy ones finish their invocation, then stop on return.
            }
        }
        foreach (var environment in idle)
        {
            _ = StopAsync(environment);
        }
    }

    /// <summary>
    /// Lambda's Shutdown phase: extensions subscribed to SHUTDOWN get the event and up to 2 s in all to finish;
    /// then the runtime gets SIGTERM and 300 ms; then everything left is killed.
    /// </summary>
    private async Task StopAsync(ExecutionEnvironment environment)
    {
        environment.MarkDead();
        if (environment.Sandbox is { } sandbox)
        {
            var runtimeGrace = TimeSpan.FromMilliseconds(300);
            if (environment.Extensions.Any && !sandbox.Exited.IsCompleted)
            {
                var extensionsGrace = TimeSpan.FromSeconds(2) - runtimeGrace;
                environment.Extensions.Shutdown("spindown", _time.GetUtcNow().Add(extensionsGrace).ToUnixTimeMilliseconds());
                await sandbox.WaitForProcessesToExitAsync("/opt/extensions/", extensionsGrace);
            }
            environment.CloseRuntimeApi();
            await sandbox.StopAsync(runtimeGrace, CancellationToken.None);
        }
        Forget(environment);
    }

    private void Forget(ExecutionEnvironment environment)
    {
        environment.Telemetry?.Dispose();
        _ = environment.Sandbox?.DestroyAsync();
        if (_slots.TryGetValue(environment.Config, out var slot))
        {
            lock (slot)
            {
                slot.All.Remove(environment);
                if (slot.All.Count == 0 && slot.Retired)
                {
                    _slots.TryRemove(new KeyValuePair<FunctionConfig, Slot>(environment.Config, slot));
                }
            }
        }
    }

    /// <summary>One loop sweeps idle environments past their lifetime (Kestrel-style heartbeat, not a timer each).</summary>
    private async Task HeartbeatAsync()
    {
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(1), _time);
        try
        {
            while (await timer.WaitForNextTickAsync(_stopping.Token))
            {
                var lifetime = _options.IdleEnvironmentLifetime;
                foreach (var slot in _slots.Values)
                {
                    List<ExecutionEnvironment>? expired = null;
                    lock (slot)
                    {
                        if (slot.Idle.Count == 0)
                        {
                            continue;
                        }
                        var keep = new Stack<ExecutionEnvironment>();
                        foreach (var environment in slot.Idle.Reverse())
                        {
                            if (Stopwatch.GetElapsedTime(environment.IdleSinceTimestamp) > lifetime || !environment.IsUsable)
                            {
                                (expired ??= []).Add(environment);
                            }
                            else
                            {
                                keep.Push(environment);
                            }
                        }
                        slot.Idle.Clear();
                        foreach (var environment in keep.Reverse())
                        {
                            slot.Idle.Push(environment);
                        }
                    }
                    foreach (var environment in expired ?? [])
                    {
                        _ = StopAsync(environment);
                    }
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    private sealed class Slot
    {
        public readonly Stack<ExecutionEnvironment> Idle = new();
        public readonly HashSet<ExecutionEnvironment> All = [];
        public bool Retired;
    }

    private static void LogFunctionOutput(ILogger logger, string function, string line)
    {
        if (logger.IsEnabled(LogLevel.Debug))
        {
            Log.FunctionOutput(logger, function, line);
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = Diagnostics.EventIds.SandboxUnavailable, Level = LogLevel.Error, Message = "Sandboxes cannot be created, so no function can run: {Reason}")]
        public static partial void SandboxUnavailable(ILogger logger, string reason);

        [LoggerMessage(EventId = Diagnostics.EventIds.FunctionOutput, Level = LogLevel.Debug, Message = "[{Function}] {Line}")]
        public static partial void FunctionOutput(ILogger logger, string function, string line);
    }
}

/// <summary>The function cannot start: its entrypoint is missing (Lambda: Runtime.InvalidEntrypoint).</summary>
internal sealed class EntrypointException(string message) : Exception(message);
