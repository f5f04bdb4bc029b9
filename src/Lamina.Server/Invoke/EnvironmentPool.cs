using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Runtime.CompilerServices;
using Lamina.Server.Hosting;
using Lamina.Server.Lambda;
using Lamina.Server.Logs;
using Lamina.Server.RuntimeApi;
using Lamina.Server.Sandbox;
using Microsoft.Extensions.Options;

namespace Lamina.Server.Invoke;

/// <summary>
/// The execution environments of every function configuration: idle ones wait in a list ordered by when they went
/// idle (taken from its end, LIFO, which keeps the warmest in use; evicted from its start), busy ones belong to their
/// invocation. Starting environments is parallel (no lock is held while a sandbox starts). Live environments together
/// hold at most the node's memory budget (Σ MemorySize): a cold start that would exceed it evicts the least recently
/// used idle environment, or is refused (<see cref="CapacityException"/>, a throttle). One heartbeat sweeps idle
/// environments past their keep-alive and keeps provisioned concurrency at its count. Stopping the server stops them all.
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
    private readonly Lambda.FunctionRegistry _registry;
    private readonly Lambda.CodeStore _codeStore;
    private readonly CancellationTokenSource _stopping = new();
    private readonly InvocationDeadlines _deadlines;
    private readonly IHostApplicationLifetime _lifetime;
    private readonly Cgroups? _cgroups;
    private Task? _heartbeat;
    private readonly Lazy<Task> _stopAll;
    private readonly int _memoryBudgetMb;
    private int _memoryInUseMb;

    // Room for environments starting at once (--max-cold-starts): held from the sandbox's launch to the end of its Init.
    private readonly StartRoom _startRoom;

    // Configurations replaced or deleted. A slot made for one after its retirement (by a start that waited for room or
    // retried its Init) is retired from the start, so its environment serves that invocation and stops.
    private readonly ConditionalWeakTable<FunctionConfig, object> _retired = new();
    private static readonly object RetiredMark = new();

    // Configurations that have had environments, by "name:version": a new configuration of one of them is an update.
    private readonly ConcurrentDictionary<string, byte> _seen = new(StringComparer.Ordinal);

    private readonly LogStore _logStore;
    private readonly Diagnostics.LaminaMetrics _metrics;
    private readonly Storage.ClusterNode _cluster;
    private readonly Storage.Database _database;

    public EnvironmentPool(IOptions<LaminaOptions> options, RuntimeApiTransport transport, FunctionRegistry registry, Lambda.CodeStore codeStore,
        LogStore logStore, TimeProvider time, IHostApplicationLifetime lifetime, ILoggerFactory loggers, Diagnostics.LaminaMetrics metrics,
        Storage.ClusterNode cluster, Storage.Database database)
    {
        _cluster = cluster;
        _database = database;
        _metrics = metrics;
        _logStore = logStore;
        _lifetime = lifetime;
        _stopAll = new Lazy<Task>(StopAllAsync);
        _options = options.Value;
        _transport = transport;
        _registry = registry;
        _codeStore = codeStore;
        _time = time;
        _deadlines = new InvocationDeadlines(time);
        _logger = loggers.CreateLogger<EnvironmentPool>();
        _functionLogger = loggers.CreateLogger("Lamina.Function");
        _memoryBudgetMb = _options.MemoryBudgetMb;
        _startRoom = new StartRoom(_options.MaxColdStarts);
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
        // A function deleted is forgotten: a new one of the same name starts with a first invoke, and names made afresh
        // (CloudFormation's) do not pile up here.
        registry.Deleted += name =>
        {
            foreach (var key in _seen.Keys)
            {
                if (key.Length > name.Length && key[name.Length] == ':' && key.StartsWith(name, StringComparison.Ordinal))
                {
                    _seen.TryRemove(key, out _);
                }
            }
        };
        registry.ProvisionedConcurrencyChanged += ReconcileProvisioned;
        if (cluster.Enabled)
        {
            cluster.Heartbeat += PublishProvisionedAsync;
        }
    }

    /// <summary>The node's memory budget (MB): the most that the live environments' MemorySize may add up to.</summary>
    public int MemoryBudgetMb => _memoryBudgetMb;

    /// <summary>Σ MemorySize of the live environments (MB).</summary>
    public int MemoryInUseMb => Volatile.Read(ref _memoryInUseMb);

    /// <summary>An idle environment of <paramref name="config"/>, or null if none is warm.</summary>
    public ExecutionEnvironment? TryTakeIdle(FunctionConfig config)
    {
        if (!_slots.TryGetValue(config, out var slot))
        {
            return null;
        }
        List<ExecutionEnvironment>? dead = null;
        ExecutionEnvironment? taken;
        lock (slot)
        {
            // Provisioned environments first (Lambda routes to them before scaling on demand), then the warmest.
            taken = TakeLast(slot.ProvisionedIdle, ref dead) ?? TakeLast(slot.Idle, ref dead);
        }
        // An environment that died while idle (its runtime exited) is stopped, not just forgotten.
        if (dead is not null)
        {
            foreach (var environment in dead)
            {
                _ = StopAsync(environment, EnvironmentEnd.Failed);
            }
        }
        return taken;

        static ExecutionEnvironment? TakeLast(List<ExecutionEnvironment> idle, ref List<ExecutionEnvironment>? dead)
        {
            while (idle.Count > 0)
            {
                var environment = idle[^1];
                idle.RemoveAt(idle.Count - 1);
                if (environment.IsUsable)
                {
                    return environment;
                }
                (dead ??= []).Add(environment);
            }
            return null;
        }
    }

    /// <summary>
    /// A turn to start an environment of <paramref name="config"/>, at once while fewer than --max-cold-starts are
    /// starting. Without room the caller waits, and is handed an environment of the configuration that goes idle
    /// meanwhile (<see cref="StartTurn.Idle"/>: warm, no start), or gets room (<see cref="StartTurn.HoldsRoom"/>: it
    /// calls <see cref="EndStart"/> once the environment's Init is over, or it never started). The wait is bounded by
    /// the Init timeout, and ends when the server stops: an invocation behind Inits that hang then starts without room.
    /// </summary>
    public async ValueTask<StartTurn> WaitToStartAsync(FunctionConfig config)
    {
        if (_startRoom.TryTake())
        {
            return new StartTurn(null, HoldsRoom: true);
        }
        if (_retired.TryGetValue(config, out _))
        {
            // Replaced while the invocation was on its way: nothing of it will be given back to hand over.
            return new StartTurn(null, await _startRoom.TakeAsync(config.Name, _options.InitTimeout, _stopping.Token));
        }
        var slot = _slots.GetOrAdd(config, static _ => new Slot());
        var handover = new TaskCompletionSource<ExecutionEnvironment>(TaskCreationOptions.RunContinuationsAsynchronously);
        LinkedListNode<TaskCompletionSource<ExecutionEnvironment>> waiter;
        lock (slot)
        {
            waiter = slot.Waiters.AddLast(handover);
        }
        // One may have gone idle between the caller's look and the waiter's being there.
        if (TryTakeIdle(config) is { } idle)
        {
            if (Leave(slot, waiter))
            {
                return new StartTurn(idle, HoldsRoom: false);
            }
            Return(idle); // one was handed over meanwhile: this one goes back (to the next waiter, or idle)
            return new StartTurn(await handover.Task, HoldsRoom: false);
        }

        using var giveUp = CancellationTokenSource.CreateLinkedTokenSource(_stopping.Token);
        var room = _startRoom.TakeAsync(config.Name, _options.InitTimeout, giveUp.Token);
        if (await Task.WhenAny(room, handover.Task) == room)
        {
            var holdsRoom = await room; // false: waited out, or the server is stopping
            if (Leave(slot, waiter))
            {
                return new StartTurn(null, holdsRoom);
            }
            // Handed an environment as the wait ended: the environment serves, the room goes back.
            if (holdsRoom)
            {
                _startRoom.Release();
            }
            return new StartTurn(await handover.Task, HoldsRoom: false);
        }
        giveUp.Cancel();
        if (await room)
        {
            _startRoom.Release(); // came just before the cancellation
        }
        return new StartTurn(await handover.Task, HoldsRoom: false);

        // False when the waiter was handed an environment already.
        static bool Leave(Slot slot, LinkedListNode<TaskCompletionSource<ExecutionEnvironment>> waiter)
        {
            lock (slot)
            {
                if (waiter.List is null)
                {
                    return false;
                }
                slot.Waiters.Remove(waiter);
                return true;
            }
        }
    }

    /// <summary>Cold starts waiting for room now (the <c>lamina_cold_starts_waiting</c> gauge).</summary>
    public int ColdStartsWaiting => _startRoom.Waiting;

    /// <summary>Gives back the room of a <see cref="StartTurn"/> (the environment's Init is over, or it never started).</summary>
    public void EndStart() => _startRoom.Release();

    /// <summary>
    /// Starts a new environment for <paramref name="config"/> (a cold start). The sandbox is running when this
    /// returns; its Init may still be in progress. Fails with a <see cref="SandboxException"/> when no sandbox can be
    /// made, with a <see cref="CapacityException"/> when the memory budget has no room even after evicting idle ones.
    /// </summary>
    public async Task<ExecutionEnvironment> StartAsync(FunctionConfig config, string requestId, bool provisioned = false)
    {
        if (_launcher is null)
        {
            throw new SandboxException(_sandboxError ?? "sandboxes are unavailable");
        }
        if (_stopping.IsCancellationRequested)
        {
            throw new SandboxException("the server is stopping");
        }
        var started = Stopwatch.GetTimestamp();
        if (!TryReserveMemory(config.MemorySize))
        {
            throw new CapacityException(string.Create(CultureInfo.InvariantCulture,
                $"the node's memory budget ({_memoryBudgetMb} MB) is held by busy environments; this function needs {config.MemorySize} MB"));
        }
        try
        {
            var environment = await LaunchAsync(config, requestId, provisioned);
            environment.ColdStart.SandboxMs = Stopwatch.GetElapsedTime(started).TotalMilliseconds;
            return environment;
        }
        catch (Exception e)
        {
            Interlocked.Add(ref _memoryInUseMb, -config.MemorySize);
            if (e is IOException or UnauthorizedAccessException)
            {
                // cgroup or file-system trouble before the launcher's own handling: still "no sandbox can be made".
                throw new SandboxException($"could not start the sandbox: {e.Message}", e);
            }
            throw;
        }
    }

    private async Task<ExecutionEnvironment> LaunchAsync(FunctionConfig config, string requestId, bool provisioned)
    {
        Debug.Assert(_launcher is not null);
        var codeDirectory = _codeStore.GetCodeDirectory(config);
        var optDirectory = _codeStore.GetOptDirectory(config); // the configuration's layers, merged when it was written
        if (!RuntimeCatalog.TryGetCommand(config.Runtime, config.MemorySize, codeDirectory, optDirectory, out var command, out var entrypointError))
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
            command = ["/bin/bash", Sandbox.Sandbox.InitScript, .. command];
        }

        var id = Guid.NewGuid().ToString("N");
        var log = new InvocationLog(config.LogGroupKey,
            InvocationLog.StreamName(_time.GetUtcNow(), config.Version, id, config.LogGroup is null ? null : config.FunctionName), _logStore, LogFormatting.For(config));
        log.InitStart(config.Runtime, _options.Region, provisioned);
        var environment = new ExecutionEnvironment(id, config, log, _time, _deadlines)
        {
            InitRequestId = requestId,
            AccountId = config.ForeignAccount ?? _options.AccountId, // its credentials act for the function's account
            ProvisionedInit = provisioned,
            StartedAt = _time.GetUtcNow(),
            Credentials = Security.SessionCredentials.Issue(_time.GetUtcNow()),
        };
        environment.HoldMemory(config.MemorySize);
        var spec = new SandboxSpec
        {
            Id = id,
            CodeDirectory = codeDirectory,
            OptDirectory = optDirectory,
            RuntimesDirectory = _options.RuntimesDirectory,
            NodeMajorVersion = RuntimeCatalog.NodeMajorVersion(config.Runtime),
            Command = command,
            Environment = EnvironmentVariables.For(config, log, _options, environment.Credentials, provisioned),
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
        bool retired;
        lock (slot)
        {
            // OnRetired records the configuration before it looks for the slot: one of the two sees the other.
            retired = slot.Retired |= _retired.TryGetValue(config, out _);
            environment.ColdStart.Reason = provisioned ? ColdStartReason.Provisioned
                : slot.All.Count > 0 ? ColdStartReason.ScaleOut
                : slot.LastEnd switch
                {
                    EnvironmentEnd.Failed => ColdStartReason.AfterFailure,
                    EnvironmentEnd.Evicted => ColdStartReason.AfterEviction,
                    _ => _seen.ContainsKey(SeenKey(config)) ? ColdStartReason.AfterUpdate : ColdStartReason.FirstInvoke,
                };
            // In a slot retired meanwhile (the function updated or deleted during the start, or while the invocation
            // waited for room) it still serves the invocation it was started for, which resolved this configuration;
            // it stops when given back.
            slot.All.Add(environment);
        }
        if (!retired)
        {
            _seen.TryAdd(SeenKey(config), 0); // (a deleted function's start must not make its name's next function an update)
        }
        _ = sandbox.Exited.ContinueWith((_, state) => Forget((ExecutionEnvironment)state!), environment, CancellationToken.None, TaskContinuationOptions.None, TaskScheduler.Default);
        return environment;
    }

    private static string SeenKey(FunctionConfig config) => config.Name + ":" + config.Version;

    /// <summary>
    /// Takes <paramref name="memoryMb"/> of the memory budget, evicting idle environments least recently used first
    /// until it fits. False when even evicting every idle (not provisioned) environment would not make room.
    /// </summary>
    private bool TryReserveMemory(int memoryMb)
    {
        while (true)
        {
            var inUse = Volatile.Read(ref _memoryInUseMb);
            if (inUse + memoryMb <= _memoryBudgetMb)
            {
                if (Interlocked.CompareExchange(ref _memoryInUseMb, inUse + memoryMb, inUse) == inUse)
                {
                    return true;
                }
                continue;
            }
            // Evict only when the idle environments could make room at all: never empty the node for nothing.
            if (inUse - IdleMemoryMb() + memoryMb > _memoryBudgetMb || !EvictLeastRecentlyUsed())
            {
                return false;
            }
        }
    }

    /// <summary>Σ MemorySize of the idle on-demand environments (what eviction could give back).</summary>
    private int IdleMemoryMb()
    {
        var total = 0;
        foreach (var slot in _slots.Values)
        {
            lock (slot)
            {
                foreach (var environment in slot.Idle)
                {
                    total += environment.Config.MemorySize;
                }
            }
        }
        return total;
    }

    /// <summary>
    /// Stops the idle environment that has been idle longest, across all functions, and gives its memory back at once
    /// (its processes take up to the Shutdown grace to exit). False when nothing is idle.
    /// </summary>
    private bool EvictLeastRecentlyUsed()
    {
        ExecutionEnvironment? oldest = null;
        Slot? oldestSlot = null;
        foreach (var slot in _slots.Values)
        {
            lock (slot)
            {
                if (slot.Idle.Count > 0 && (oldest is null || slot.Idle[0].IdleSinceTimestamp < oldest.IdleSinceTimestamp))
                {
                    oldest = slot.Idle[0];
                    oldestSlot = slot;
                }
            }
        }
        if (oldest is null)
        {
            return false;
        }
        lock (oldestSlot!)
        {
            if (!oldestSlot.Idle.Remove(oldest))
            {
                return true; // taken meanwhile; look again
            }
        }
        Log.Evicted(_logger, oldest.Config.Name, oldest.Config.Version, oldest.Id);
        oldest.MarkDead(EnvironmentEnd.Evicted);
        ReleaseMemory(oldest);
        _ = StopAsync(oldest);
        return true;
    }

    private void ReleaseMemory(ExecutionEnvironment environment)
    {
        var memoryMb = environment.TakeMemory();
        if (memoryMb != 0)
        {
            Interlocked.Add(ref _memoryInUseMb, -memoryMb);
        }
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
        var end = EnvironmentEnd.Stopped;
        if (_slots.TryGetValue(environment.Config, out var slot) && environment.IsUsable)
        {
            lock (slot)
            {
                if (!slot.Retired && !_stopping.IsCancellationRequested)
                {
                    // An invocation waiting for room to start one takes it at once.
                    while (slot.Waiters.First is { } waiter)
                    {
                        slot.Waiters.RemoveFirst();
                        if (waiter.Value.TrySetResult(environment))
                        {
                            return;
                        }
                    }
                    environment.IdleSinceTimestamp = Stopwatch.GetTimestamp();
                    (environment.Provisioned is not null ? slot.ProvisionedIdle : slot.Idle).Add(environment);
                    return;
                }
                end = _stopping.IsCancellationRequested ? EnvironmentEnd.Stopped : EnvironmentEnd.Retired;
            }
        }
        _ = StopAsync(environment, end);
    }

    /// <summary>Stops an environment that did not work out (init failed, timed out…).</summary>
    public void Discard(ExecutionEnvironment environment)
    {
        environment.MarkDead(EnvironmentEnd.Failed);
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
            // Groups of a previous run that was killed; their processes died with it (--die-with-parent). And those of
            // other servers killed on this machine, whose data directories may never be used again.
            await _cgroups.RemoveLeftoversAsync();
            await _cgroups.RemoveDeadInstancesAsync();
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
                slot.ProvisionedIdle.Clear();
                all.AddRange(slot.All);
            }
        }
        await Task.WhenAll(all.Select(e => StopAsync(e, EnvironmentEnd.Stopped)));
        _cgroups?.RemoveInstance();
    }

    public void Dispose()
    {
        _launcher?.Dispose();
        _deadlines.Dispose();
        // _stopping is not disposed: a request still on its way at shutdown may read its token.
    }

    private void OnRetired(FunctionConfig config)
    {
        _retired.AddOrUpdate(config, RetiredMark);
        if (!_slots.TryGetValue(config, out var slot))
        {
            return;
        }
        List<ExecutionEnvironment> idle;
        lock (slot)
        {
            slot.Retired = true;
            idle = [.. slot.Idle, .. slot.ProvisionedIdle];
            slot.Idle.Clear();
            slot.ProvisionedIdle.Clear();
            // The others, busy or still in Init for an invocation, serve it and stop when given back (Return stops the
            // environments of a retired slot). Marking them dead here failed an invocation whose Init was under way
            // during an update with Runtime.ExitError.
            if (slot.All.Count == 0)
            {
                // None left (reaped while idle): Forget, which removes a retired slot with its last environment, will
                // not run for it, so the slot (and the configuration it holds) goes now; an update or a deletion of a
                // function gone idle left one behind each time. A start still to come makes a retired slot of its own.
                _slots.TryRemove(new KeyValuePair<FunctionConfig, Slot>(config, slot));
            }
        }
        foreach (var environment in idle)
        {
            _ = StopAsync(environment, EnvironmentEnd.Retired);
        }
    }

    /// <summary>
    /// Lambda's Shutdown phase: extensions subscribed to SHUTDOWN get the event and up to 2 s in all to finish;
    /// then the runtime gets SIGTERM and 300 ms; then everything left is killed.
    /// </summary>
    private async Task StopAsync(ExecutionEnvironment environment, EnvironmentEnd reason = EnvironmentEnd.Stopped)
    {
        environment.MarkDead(reason);
        if (environment.Sandbox is { } sandbox)
        {
            var runtimeGrace = TimeSpan.FromMilliseconds(300);
            if (environment.Extensions.Any && !sandbox.Exited.IsCompleted)
            {
                var extensionsGrace = TimeSpan.FromSeconds(2) - runtimeGrace;
                environment.Extensions.Shutdown(environment.ShutdownReason, _time.GetUtcNow().Add(extensionsGrace).ToUnixTimeMilliseconds());
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
        ReleaseMemory(environment);
        if (_slots.TryGetValue(environment.Config, out var slot))
        {
            lock (slot)
            {
                if (slot.All.Remove(environment))
                {
                    // A sandbox that exited before anything ended it crashed, even when the invocation that saw the crash
                    // has not marked it yet: the next cold start is after a failure.
                    slot.LastEnd = environment.End is EnvironmentEnd.None ? EnvironmentEnd.Failed : environment.End;
                }
                slot.Idle.Remove(environment); // it may have died while idle
                slot.ProvisionedIdle.Remove(environment);
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
                try
                {
                    ReapIdle(_options.IdleEnvironmentLifetime);
                    ReconcileProvisioned();
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    // One bad sweep must not end the heartbeat (the next one retries).
                    Log.HeartbeatFailed(_logger, e);
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>Every live environment as operators see it (<c>GET /lamina/v1/environments</c>).</summary>
    public List<EnvironmentInfo> Snapshot()
    {
        var result = new List<EnvironmentInfo>();
        foreach (var slot in _slots.Values)
        {
            lock (slot)
            {
                foreach (var environment in slot.All)
                {
                    var state = !environment.IsUsable ? "stopping"
                        : !environment.Initialized ? "initializing"
                        : slot.Idle.Contains(environment) || slot.ProvisionedIdle.Contains(environment) ? "idle"
                        : "busy";
                    result.Add(new EnvironmentInfo(environment, state));
                }
            }
        }
        return result;
    }

    private static bool CredentialsExpiring(ExecutionEnvironment environment, DateTimeOffset now) =>
        environment.Credentials is { } credentials && credentials.Expiration - now < Security.SessionCredentials.RenewalMargin;

    /// <summary>Stops idle environments past their keep-alive time (oldest first in each list, so it stops at the first that is not).</summary>
    private void ReapIdle(TimeSpan lifetime)
    {
        var now = _time.GetUtcNow();
        foreach (var slot in _slots.Values)
        {
            List<ExecutionEnvironment>? expired = null;
            List<ExecutionEnvironment>? dead = null;
            lock (slot)
            {
                // Oldest first: the expired ones are a prefix of the list.
                var count = 0;
                while (count < slot.Idle.Count && Stopwatch.GetElapsedTime(slot.Idle[count].IdleSinceTimestamp) > lifetime)
                {
                    count++;
                }
                if (count > 0)
                {
                    expired = slot.Idle.GetRange(0, count);
                    slot.Idle.RemoveRange(0, count);
                }
                // Environments that died while idle (a runtime that exited), wherever they are, provisioned ones too.
                foreach (var list in (List<ExecutionEnvironment>[])[slot.Idle, slot.ProvisionedIdle])
                {
                    if (list.Exists(static e => !e.IsUsable))
                    {
                        (dead ??= []).AddRange(list.FindAll(static e => !e.IsUsable));
                        list.RemoveAll(static e => !e.IsUsable);
                    }
                    // Credentials cannot be renewed inside a running process: retire the environment before they expire
                    // (a provisioned one is replaced by the next reconcile).
                    if (list.Exists(e => CredentialsExpiring(e, now)))
                    {
                        (expired ??= []).AddRange(list.FindAll(e => CredentialsExpiring(e, now)));
                        list.RemoveAll(e => CredentialsExpiring(e, now));
                    }
                }
            }
            foreach (var environment in expired ?? [])
            {
                Log.Reaped(_logger, environment.Config.Name, environment.Config.Version, environment.Id);
                _ = StopAsync(environment, environment.IsUsable ? EnvironmentEnd.Evicted : EnvironmentEnd.Failed);
            }
            foreach (var environment in dead ?? [])
            {
                _ = StopAsync(environment, EnvironmentEnd.Failed);
            }
        }
    }

    private sealed class Slot
    {
        /// <summary>Idle on-demand environments, oldest idle first.</summary>
        public readonly List<ExecutionEnvironment> Idle = [];

        /// <summary>Idle provisioned environments (never reaped nor evicted while their provisioned concurrency wants them).</summary>
        public readonly List<ExecutionEnvironment> ProvisionedIdle = [];

        public readonly HashSet<ExecutionEnvironment> All = [];
        public bool Retired;

        /// <summary>Invocations waiting for room to start an environment, first come first served: one returned goes to them.</summary>
        public readonly LinkedList<TaskCompletionSource<ExecutionEnvironment>> Waiters = [];

        /// <summary>Why the last environment to go went (explains the next cold start).</summary>
        public EnvironmentEnd LastEnd;
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

        [LoggerMessage(EventId = Diagnostics.EventIds.EnvironmentEvicted, Level = LogLevel.Information, Message = "Evicted idle environment {Id} of {Function}:{Version} for the node's memory budget")]
        public static partial void Evicted(ILogger logger, string function, string version, string id);

        [LoggerMessage(EventId = Diagnostics.EventIds.EnvironmentReaped, Level = LogLevel.Debug, Message = "Stopped environment {Id} of {Function}:{Version}: idle past its keep-alive time")]
        public static partial void Reaped(ILogger logger, string function, string version, string id);

        [LoggerMessage(EventId = Diagnostics.EventIds.HeartbeatFailed, Level = LogLevel.Error, Message = "The environments' heartbeat failed; it goes on")]
        public static partial void HeartbeatFailed(ILogger logger, Exception exception);

        [LoggerMessage(EventId = Diagnostics.EventIds.ProvisionedInitFailed, Level = LogLevel.Warning, Message = "Provisioned concurrency of {Function}:{Qualifier} failed: {Reason}")]
        public static partial void ProvisionedInitFailed(ILogger logger, string function, string qualifier, string reason);
    }
}

/// <summary>
/// What <see cref="EnvironmentPool.WaitToStartAsync"/> gave: an environment that went idle (no start needed), or none,
/// and then whether the start holds a room of --max-cold-starts (to give back with <see cref="EnvironmentPool.EndStart"/>).
/// </summary>
internal readonly record struct StartTurn(ExecutionEnvironment? Idle, bool HoldsRoom);

/// <summary>One environment and its state (<c>initializing</c>, <c>idle</c>, <c>busy</c>, <c>stopping</c>) at the time of a snapshot.</summary>
internal readonly record struct EnvironmentInfo(ExecutionEnvironment Environment, string State);

/// <summary>No environment can start now: the node's memory budget is held by busy environments (a throttle).</summary>
internal sealed class CapacityException(string message) : Exception(message);

/// <summary>The function cannot start: its entrypoint is missing (Lambda: Runtime.InvalidEntrypoint).</summary>
internal sealed class EntrypointException(string message) : Exception(message);
