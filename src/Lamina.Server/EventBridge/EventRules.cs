using System.Buffers;
using System.Collections.Immutable;
using System.Globalization;
using System.Text.Json;
using Lamina.Server.Async;
using Lamina.Server.Diagnostics;
using Lamina.Server.Hosting;
using Lamina.Server.Lambda;
using Lamina.Server.Protocols;
using Lamina.Server.Storage;
using System.Data.Common;
using Microsoft.Extensions.Options;

namespace Lamina.Server.EventBridge;

/// <summary>An event bus: <c>default</c> always exists; others come from CreateEventBus.</summary>
internal sealed record EventBus(string Name, string? Description, DateTimeOffset Created);

/// <summary>A rule on a bus: an event pattern, a schedule, or both; its targets in the order they were put.</summary>
internal sealed record EventRule(string Bus, string Name, string? PatternText, EventPattern? Pattern, string? ScheduleText, ScheduleExpression? Schedule,
    string State, string? Description, string? RoleArn, ImmutableArray<TargetDto> Targets)
{
    public bool Enabled => State != "DISABLED";
}

/// <summary>An EventBridge API error (all are 400 in awsJson1_1).</summary>
internal sealed class EventsException(string code, string message) : Exception(message)
{
    public string Code { get; } = code;
}

/// <summary>
/// EventBridge-compatible rules (issue #10): buses, rules and targets kept in <c>lamina.db</c> and held in memory as
/// one snapshot; PutEvents matches entries against the enabled rules of their bus; schedules fire from a one-second
/// loop. A matched event goes to each target — a Lamina function — through the asynchronous queue (#6), so the
/// function's retries and destinations apply, if the function's resource policy lets <c>events.amazonaws.com</c>
/// invoke it for that rule (AddPermission, as on AWS). Firings missed while the server was down are not replayed,
/// and one server never delivers a firing twice.
/// </summary>
/// <remarks>
/// Several nodes (issue #25): buses, rules and targets live on the cluster's PostgreSQL; a write takes the cluster's
/// lock, rereads them first and announces itself on <see cref="ClusterNode.EventsChannel"/>, and the other nodes
/// reread them when they hear of it (or reconnect). Schedules fire on the holder of the <c>schedules</c> lease only,
/// from a plan kept in <c>schedule_firings</c>: a node that takes the lease over takes up the last holder's plan, so
/// a failover neither skips a period (a firing that fell due meanwhile fires late, once) nor repeats one. A firing is
/// queued first and the plan moved on after: a holder killed between the two means that firing is queued again by
/// the next holder (at least once, as the async queue).
/// </remarks>
internal sealed partial class EventRules : IHostedService, IDisposable
{
    public const string DefaultBus = "default";

    /// <summary>The lease whose holder fires the schedules (every node, on a single machine).</summary>
    public const string ScheduleLease = "schedules";

    private readonly Database _database;
    private readonly ClusterNode _cluster;
    private readonly AsyncDispatcher _queue;
    private readonly FunctionRegistry _functions;
    private readonly LaminaOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger<EventRules> _logger;
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private readonly CancellationTokenSource _stopping = new();
    private readonly Dictionary<(string Bus, string Rule), DateTimeOffset> _nextFiring = []; // in a cluster, a cache of schedule_firings
    private bool _planLoaded; // in a cluster: _nextFiring holds schedule_firings as this holder read it
    private bool _firing; // whether this node fired the schedules at the last tick (for the log)
    private ImmutableSortedDictionary<string, EventBus> _buses = ImmutableSortedDictionary<string, EventBus>.Empty.WithComparers(StringComparer.Ordinal);
    private ImmutableSortedDictionary<(string Bus, string Name), EventRule> _rules = ImmutableSortedDictionary<(string, string), EventRule>.Empty;
    private Task? _scheduler;

    public EventRules(Database database, ClusterNode cluster, AsyncDispatcher queue, FunctionRegistry functions, IOptions<LaminaOptions> options, TimeProvider time, ILogger<EventRules> logger)
    {
        _database = database;
        _cluster = cluster;
        _queue = queue;
        _functions = functions;
        _options = options.Value;
        _time = time;
        _logger = logger;
    }

    public IEnumerable<EventBus> Buses => _buses.Values;

    public string BusArn(string bus) => $"arn:aws:events:{_options.Region}:{_options.AccountId}:event-bus/{bus}";

    public string RuleArn(string bus, string rule) =>
        bus == DefaultBus ? $"arn:aws:events:{_options.Region}:{_options.AccountId}:rule/{rule}" : $"arn:aws:events:{_options.Region}:{_options.AccountId}:rule/{bus}/{rule}";

    public Task StartAsync(CancellationToken cancellationToken)
    {
        Load();
        if (_cluster.Enabled)
        {
            _cluster.Follow(ClusterNode.EventsChannel, _ => ReloadAsync());
        }
        _cluster.RequestLease(ScheduleLease);
        _scheduler = RunSchedulesAsync();
        return Task.CompletedTask;
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        await _stopping.CancelAsync();
        if (_scheduler is not null)
        {
            await _scheduler;
        }
    }

    public void Dispose()
    {
        _writeLock.Dispose();
        _stopping.Dispose();
    }

    // ---- buses ----------------------------------------------------------------------------------

    /// <summary>The bus a request names (a name or an ARN; none is the default bus), or ResourceNotFoundException.</summary>
    public string ResolveBus(string? nameOrArn)
    {
        var name = string.IsNullOrEmpty(nameOrArn) ? DefaultBus
            : nameOrArn.StartsWith("arn:", StringComparison.Ordinal) && nameOrArn.IndexOf(":event-bus/", StringComparison.Ordinal) is var at and >= 0
                ? nameOrArn[(at + ":event-bus/".Length)..] : nameOrArn;
        return _buses.ContainsKey(name) ? name : throw new EventsException("ResourceNotFoundException", $"Event bus {name} does not exist.");
    }

    public async Task<EventBus> CreateBusAsync(string name, string? description)
    {
        return await WriteAsync((connection, transaction) =>
        {
            if (_buses.ContainsKey(name))
            {
                throw new EventsException("ResourceAlreadyExistsException", $"Event bus {name} already exists.");
            }
            var bus = new EventBus(name, description, _time.GetUtcNow());
            Execute(connection, transaction, "INSERT INTO event_buses (name, description, created_at) VALUES ($1, $2, $3);",
                name, description, bus.Created.ToString("O", CultureInfo.InvariantCulture));
            _buses = _buses.Add(name, bus);
            return bus;
        });
    }

    public async Task DeleteBusAsync(string name)
    {
        if (name == DefaultBus)
        {
            throw new EventsException("ValidationException", "Cannot delete event bus default.");
        }
        await WriteAsync((connection, transaction) =>
        {
            if (!_buses.ContainsKey(name))
            {
                return 0; // idempotent, as AWS
            }
            if (_rules.Keys.Any(k => k.Bus == name))
            {
                throw new EventsException("ValidationException", $"Cannot delete event bus {name} because it has rules.");
            }
            Execute(connection, transaction, "DELETE FROM event_buses WHERE name = $1;", name);
            _buses = _buses.Remove(name);
            return 0;
        });
    }

    // ---- rules ----------------------------------------------------------------------------------

    public EventRule GetRule(string bus, string name) =>
        _rules.TryGetValue((bus, name), out var rule) ? rule : throw new EventsException("ResourceNotFoundException", $"Rule {name} does not exist on EventBus {bus}.");

    public IEnumerable<EventRule> Rules(string bus) => _rules.Values.Where(r => r.Bus == bus);

    /// <summary>PutRule: creates or replaces the rule's settings; its targets stay.</summary>
    public async Task<EventRule> PutRuleAsync(string bus, string name, string? patternText, string? scheduleText, string? state, string? description, string? roleArn)
    {
        EventPattern? pattern = null;
        if (patternText is not null && (pattern = EventPattern.Parse(patternText, out var reason)) is null)
        {
            throw new EventsException("InvalidEventPatternException", $"Event pattern is not valid. Reason: {reason}");
        }
        ScheduleExpression? schedule = null;
        if (scheduleText is not null)
        {
            if (bus != DefaultBus)
            {
                throw new EventsException("ValidationException", "ScheduleExpression is supported only on the default event bus.");
            }
            schedule = ScheduleExpression.Parse(scheduleText) ?? throw new EventsException("ValidationException", "Parameter ScheduleExpression is not valid.");
        }
        if (pattern is null && schedule is null)
        {
            throw new EventsException("ValidationException", "Parameter(s) EventPattern or ScheduleExpression must be specified.");
        }
        return await WriteAsync((connection, transaction) =>
        {
            var targets = _rules.TryGetValue((bus, name), out var existing) ? existing.Targets : [];
            var rule = new EventRule(bus, name, patternText, pattern, scheduleText, schedule, state ?? "ENABLED", description, roleArn, targets);
            Execute(connection, transaction, """
                INSERT INTO event_rules (bus, name, event_pattern, schedule, state, description, role_arn) VALUES ($1, $2, $3, $4, $5, $6, $7)
                ON CONFLICT (bus, name) DO UPDATE SET event_pattern = excluded.event_pattern, schedule = excluded.schedule, state = excluded.state,
                    description = excluded.description, role_arn = excluded.role_arn;
                """, bus, name, patternText, scheduleText, rule.State, description, roleArn);
            _rules = _rules.SetItem((bus, name), rule);
            ForgetPlan(connection, transaction, bus, name); // a changed schedule starts again from now
            return rule;
        });
    }

    public async Task SetStateAsync(string bus, string name, bool enabled)
    {
        await WriteAsync((connection, transaction) =>
        {
            var rule = GetRule(bus, name);
            Execute(connection, transaction, "UPDATE event_rules SET state = $3 WHERE bus = $1 AND name = $2;", bus, name, enabled ? "ENABLED" : "DISABLED");
            _rules = _rules.SetItem((bus, name), rule with { State = enabled ? "ENABLED" : "DISABLED" });
            ForgetPlan(connection, transaction, bus, name);
            return 0;
        });
    }

    public async Task DeleteRuleAsync(string bus, string name, bool force)
    {
        await WriteAsync((connection, transaction) =>
        {
            if (!_rules.TryGetValue((bus, name), out var rule))
            {
                return 0; // idempotent, as AWS
            }
            if (rule.Targets.Length > 0 && !force)
            {
                throw new EventsException("ValidationException", "Rule can't be deleted since it has targets.");
            }
            Execute(connection, transaction, "DELETE FROM event_targets WHERE bus = $1 AND rule = $2;", bus, name);
            Execute(connection, transaction, "DELETE FROM event_rules WHERE bus = $1 AND name = $2;", bus, name);
            _rules = _rules.Remove((bus, name));
            ForgetPlan(connection, transaction, bus, name);
            return 0;
        });
    }

    /// <summary>PutTargets: adds or replaces targets by Id; returns the entries refused, each with its reason.</summary>
    public async Task<List<(string Id, string Code, string Message)>> PutTargetsAsync(string bus, string name, List<TargetDto> targets)
    {
        return await WriteAsync((connection, transaction) =>
        {
            var rule = GetRule(bus, name);
            var failed = new List<(string, string, string)>();
            var next = rule.Targets.ToList();
            foreach (var target in targets)
            {
                if (CheckTarget(target) is { } problem)
                {
                    failed.Add((target.Id ?? "", "ValidationException", problem));
                    continue;
                }
                next.RemoveAll(t => t.Id == target.Id);
                next.Add(target);
                Execute(connection, transaction, """
                    INSERT INTO event_targets (bus, rule, id, target) VALUES ($1, $2, $3, $4)
                    ON CONFLICT (bus, rule, id) DO UPDATE SET target = excluded.target;
                    """, bus, name, target.Id, JsonSerializer.Serialize(target, LaminaJsonContext.Default.TargetDto));
            }
            if (next.Count > 5)
            {
                throw new EventsException("LimitExceededException", "The requested resource exceeds the maximum number allowed (5 targets per rule).");
            }
            _rules = _rules.SetItem((bus, name), rule with { Targets = [.. next] });
            return failed;
        });
    }

    public async Task<List<(string Id, string Code, string Message)>> RemoveTargetsAsync(string bus, string name, List<string> ids)
    {
        return await WriteAsync((connection, transaction) =>
        {
            var rule = GetRule(bus, name);
            var failed = new List<(string, string, string)>();
            var next = rule.Targets.ToList();
            foreach (var id in ids)
            {
                if (next.RemoveAll(t => t.Id == id) == 0)
                {
                    failed.Add((id, "ResourceNotFoundException", $"Target {id} does not exist on rule {name}."));
                    continue;
                }
                Execute(connection, transaction, "DELETE FROM event_targets WHERE bus = $1 AND rule = $2 AND id = $3;", bus, name, id);
            }
            _rules = _rules.SetItem((bus, name), rule with { Targets = [.. next] });
            return failed;
        });
    }

    private static string? CheckTarget(TargetDto target)
    {
        if (string.IsNullOrEmpty(target.Id) || target.Id.Length > 64 || !target.Id.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '-' or '_'))
        {
            return "Target Id must match [\\.\\-_A-Za-z0-9]+ and be 1 to 64 characters long.";
        }
        if (string.IsNullOrEmpty(target.Arn))
        {
            return "Target Arn must not be empty.";
        }
        if (!target.Arn.StartsWith("arn:aws:lambda:", StringComparison.Ordinal) || !target.Arn.Contains(":function:", StringComparison.Ordinal))
        {
            return $"Lamina delivers to Lambda functions only; {target.Arn} is not a function ARN.";
        }
        var inputs = (target.Input is null ? 0 : 1) + (target.InputPath is null ? 0 : 1) + (target.InputTransformer is null ? 0 : 1);
        if (inputs > 1)
        {
            return "Only one of Input, InputPath, or InputTransformer may be specified.";
        }
        if (target.Input is { } input && !IsJson(input))
        {
            return "Input is not valid JSON text.";
        }
        if (target.InputPath is { } path && TargetInput.CheckPath(path) is { } badPath)
        {
            return badPath;
        }
        if (target.InputTransformer is { } transformer)
        {
            if (transformer.InputTemplate is null)
            {
                return "InputTemplate must be specified.";
            }
            foreach (var mapped in (transformer.InputPathsMap ?? []).Values)
            {
                if (TargetInput.CheckPath(mapped) is { } badMapped)
                {
                    return badMapped;
                }
            }
        }
        return null;
    }

    // ---- events ---------------------------------------------------------------------------------

    /// <summary>Matches one event (already in EventBridge's envelope) against the enabled rules of its bus and delivers it.</summary>
    public async Task<int> DispatchAsync(string bus, JsonElement @event, string eventId)
    {
        var matched = 0;
        foreach (var rule in _rules.Values)
        {
            if (rule.Bus == bus && rule.Enabled && rule.Pattern is { } pattern && pattern.Matches(@event))
            {
                matched++;
                await DeliverAsync(rule, @event, eventId);
            }
        }
        return matched;
    }

    private async Task DeliverAsync(EventRule rule, JsonElement @event, string eventId)
    {
        var ruleArn = RuleArn(rule.Bus, rule.Name);
        foreach (var target in rule.Targets)
        {
            var arn = target.Arn!;
            // arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]; the account decides whose function it is.
            var parts = arn.Split(':');
            var account = parts.Length > 4 && parts[4].Length > 0 ? parts[4] : _options.AccountId;
            var rest = arn[(arn.IndexOf(":function:", StringComparison.Ordinal) + ":function:".Length)..];
            var colon = rest.IndexOf(':', StringComparison.Ordinal);
            var (name, qualifier) = colon < 0 ? (_options.FunctionKey(account, rest), (string?)null)
                : (_options.FunctionKey(account, rest[..colon]), rest[(colon + 1)..]);
            var caller = new PolicyCaller(null, Service: "events.amazonaws.com", SourceArn: ruleArn, SourceAccount: _options.AccountId);
            await _functions.EnsureCurrentAsync(name, entry => entry.ResolvePrimary(qualifier) is not null
                && PermissionsApi.Allows(entry, qualifier, "lambda:InvokeFunction", caller));
            if (!_functions.TryGetEntry(name, out var entry) || entry.ResolvePrimary(qualifier) is null)
            {
                Log.TargetMissing(_logger, ruleArn, arn);
                continue;
            }
            if (!PermissionsApi.Allows(entry, qualifier, "lambda:InvokeFunction", caller))
            {
                Log.NotPermitted(_logger, ruleArn, arn);
                continue;
            }
            var payload = TargetInput.For(target, @event, ruleArn, rule.Name);
            var invokedArn = qualifier is null ? _options.FunctionArn(name) : $"{_options.FunctionArn(name)}:{qualifier}";
            await _queue.AcceptAsync(Guid.NewGuid().ToString(), name, qualifier, invokedArn, payload, Tracing.TraceHeader(null, null, _time));
            Log.Delivered(_logger, eventId, ruleArn, arn);
        }
    }

    /// <summary>The envelope EventBridge wraps every event in.</summary>
    public byte[] Envelope(string id, string source, string detailType, DateTimeOffset time, IEnumerable<string> resources, string detailJson)
    {
        var buffer = new ArrayBufferWriter<byte>(256 + detailJson.Length);
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteString("version", "0");
            json.WriteString("id", id);
            json.WriteString("detail-type", detailType);
            json.WriteString("source", source);
            json.WriteString("account", _options.AccountId);
            json.WriteString("time", time.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture));
            json.WriteString("region", _options.Region);
            json.WriteStartArray("resources");
            foreach (var resource in resources)
            {
                json.WriteStringValue(resource);
            }
            json.WriteEndArray();
            json.WritePropertyName("detail");
            json.WriteRawValue(detailJson, skipInputValidation: false);
            json.WriteEndObject();
        }
        return buffer.WrittenSpan.ToArray();
    }

    // ---- schedules ------------------------------------------------------------------------------

    private async Task RunSchedulesAsync()
    {
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(1), _time);
        try
        {
            while (await timer.WaitForNextTickAsync(_stopping.Token))
            {
                try
                {
                    await FireDueAsync(_time.GetUtcNow());
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    Log.ScheduleFailed(_logger, e);
                    lock (_nextFiring)
                    {
                        _planLoaded = false; // reread the plan: a statement may have failed after the firing
                    }
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>Fires every enabled schedule due at <paramref name="now"/>, once, and plans its next firing after now.</summary>
    private async Task FireDueAsync(DateTimeOffset now)
    {
        if (!_cluster.Holds(ScheduleLease))
        {
            // Another node fires them. Once this one holds the lease again, it takes up the plan that node left.
            lock (_nextFiring)
            {
                _nextFiring.Clear();
                _planLoaded = false;
            }
            if (_firing)
            {
                _firing = false;
                Log.ScheduleLeaseLost(_logger, _cluster.NodeId);
            }
            return;
        }
        if (!_firing)
        {
            _firing = true;
            if (_cluster.Enabled)
            {
                Log.ScheduleLeaseAcquired(_logger, _cluster.NodeId);
            }
        }
        if (_cluster.Enabled && !_planLoaded)
        {
            await Task.Run(LoadPlan);
        }
        foreach (var rule in _rules.Values)
        {
            if (rule.Schedule is not { } schedule || !rule.Enabled)
            {
                continue;
            }
            var key = (rule.Bus, rule.Name);
            DateTimeOffset due;
            bool known;
            lock (_nextFiring)
            {
                known = _nextFiring.TryGetValue(key, out due);
            }
            if (!known)
            {
                // First sight (a new rule, a restart): the next firing after now; none missed is replayed. In a
                // cluster the first holder to plan it decides, and a failover keeps that plan.
                if (schedule.NextAfter(now) is { } first)
                {
                    var planned = Planned(first);
                    if (_cluster.Enabled)
                    {
                        planned = await Task.Run(() => KeepPlan(rule.Bus, rule.Name, planned));
                    }
                    lock (_nextFiring)
                    {
                        _nextFiring[key] = planned;
                    }
                }
                continue;
            }
            if (due > now)
            {
                continue;
            }
            // The next firing after this one and after now: a late tick never fires the same minute twice.
            var next = schedule.NextAfter(due);
            while (next is { } n && n <= now)
            {
                next = schedule.NextAfter(n);
            }
            next = next is { } after ? Planned(after) : null;
            if (_cluster.Enabled)
            {
                // Fired by another holder meanwhile, replanned by a change of the rule, or the lease lost on the
                // database's clock: follow the table instead.
                if (await Task.Run(() => CurrentPlan(rule.Bus, rule.Name)) is not { } current || current != due)
                {
                    lock (_nextFiring)
                    {
                        _planLoaded = false;
                    }
                    continue;
                }
                if (!_cluster.Holds(ScheduleLease))
                {
                    return;
                }
            }
            lock (_nextFiring)
            {
                if (next is { } upcoming)
                {
                    _nextFiring[key] = upcoming;
                }
                else
                {
                    _nextFiring.Remove(key);
                }
            }
            var id = Guid.NewGuid().ToString();
            var envelope = Envelope(id, "aws.events", "Scheduled Event", due, [RuleArn(rule.Bus, rule.Name)], "{}");
            using (var document = JsonDocument.Parse(envelope))
            {
                await DeliverAsync(rule, document.RootElement, id);
            }
            if (_cluster.Enabled)
            {
                // After the firing is queued: a holder lost between the two leaves the plan on this firing, and the
                // next holder queues it again (at least once) rather than skip it.
                await Task.Run(() => MovePlan(rule.Bus, rule.Name, due, next));
            }
        }
    }

    /// <summary>A planned time as PostgreSQL keeps it (microseconds); milliseconds are enough for a schedule.</summary>
    private static DateTimeOffset Planned(DateTimeOffset time) =>
        new(time.UtcTicks - time.UtcTicks % TimeSpan.TicksPerMillisecond, TimeSpan.Zero);

    /// <summary>A rule changed: its plan starts again from now (in a cluster, for whichever node holds the lease).</summary>
    private void ForgetPlan(DbConnection connection, DbTransaction transaction, string bus, string name)
    {
        if (_cluster.Enabled)
        {
            Execute(connection, transaction, "DELETE FROM schedule_firings WHERE bus = $1 AND rule = $2;", bus, name);
        }
        lock (_nextFiring)
        {
            _nextFiring.Remove((bus, name));
        }
    }

    private void LoadPlan()
    {
        var plan = new Dictionary<(string, string), DateTimeOffset>();
        using (var connection = _database.OpenShared())
        using (var command = connection.CreateCommand())
        {
            command.CommandText = "SELECT bus, rule, next_at FROM schedule_firings;";
            using var reader = command.ExecuteReader();
            while (reader.Read())
            {
                plan[(reader.GetString(0), reader.GetString(1))] = Planned(reader.GetFieldValue<DateTimeOffset>(2));
            }
        }
        lock (_nextFiring)
        {
            _nextFiring.Clear();
            foreach (var (key, at) in plan)
            {
                _nextFiring[key] = at;
            }
            _planLoaded = true;
        }
    }

    /// <summary>Records a first plan unless one is there already; the plan the table keeps.</summary>
    private DateTimeOffset KeepPlan(string bus, string name, DateTimeOffset planned)
    {
        using var connection = _database.OpenShared();
        using var command = connection.CreateCommand();
        command.CommandText = """
            INSERT INTO schedule_firings (bus, rule, next_at) VALUES (@bus, @rule, @at)
            ON CONFLICT (bus, rule) DO UPDATE SET next_at = schedule_firings.next_at
            RETURNING next_at;
            """;
        command.Add("bus", bus);
        command.Add("rule", name);
        command.Add("at", planned);
        using var reader = command.ExecuteReader();
        return reader.Read() ? Planned(reader.GetFieldValue<DateTimeOffset>(0)) : planned;
    }

    /// <summary>The rule's planned firing as the table has it, if this node still holds the lease there (PostgreSQL's clock).</summary>
    private DateTimeOffset? CurrentPlan(string bus, string name)
    {
        using var connection = _database.OpenShared();
        using var command = connection.CreateCommand();
        command.CommandText = """
            SELECT next_at FROM schedule_firings WHERE bus = @bus AND rule = @rule
                AND EXISTS (SELECT 1 FROM cluster_leases WHERE name = @lease AND holder = @node AND expires_at > now());
            """;
        command.Add("bus", bus);
        command.Add("rule", name);
        command.Add("lease", ScheduleLease);
        command.Add("node", _cluster.NodeId);
        return command.ExecuteScalar() is DateTime at ? Planned(new DateTimeOffset(DateTime.SpecifyKind(at, DateTimeKind.Utc))) : null;
    }

    /// <summary>Moves the plan from the firing just queued to the next one (or drops it), unless it changed meanwhile.</summary>
    private void MovePlan(string bus, string name, DateTimeOffset fired, DateTimeOffset? next)
    {
        using var connection = _database.OpenShared();
        using var command = connection.CreateCommand();
        command.CommandText = next is null
            ? "DELETE FROM schedule_firings WHERE bus = @bus AND rule = @rule AND next_at = @fired;"
            : "UPDATE schedule_firings SET next_at = @next WHERE bus = @bus AND rule = @rule AND next_at = @fired;";
        command.Add("bus", bus);
        command.Add("rule", name);
        command.Add("fired", fired);
        if (next is { } upcoming)
        {
            command.Add("next", upcoming);
        }
        command.ExecuteNonQuery();
    }

    // ---- storage --------------------------------------------------------------------------------

    private Task ReloadAsync() => ClusterLock.RereadAsync(_writeLock, () =>
    {
        Load();
        lock (_nextFiring)
        {
            _planLoaded = false; // a rule may have been replanned: the holder rereads the plan
        }
    });

    private void Load()
    {
        using var connection = _database.OpenShared();
        var buses = ImmutableSortedDictionary.CreateBuilder<string, EventBus>(StringComparer.Ordinal);
        buses[DefaultBus] = new EventBus(DefaultBus, null, DateTimeOffset.UnixEpoch);
        using (var command = connection.CreateCommand())
        {
            command.CommandText = "SELECT name, description, created_at FROM event_buses;";
            using var reader = command.ExecuteReader();
            while (reader.Read())
            {
                buses[reader.GetString(0)] = new EventBus(reader.GetString(0), reader.IsDBNull(1) ? null : reader.GetString(1),
                    DateTimeOffset.Parse(reader.GetString(2), CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind));
            }
        }
        var targets = new Dictionary<(string, string), List<TargetDto>>();
        using (var command = connection.CreateCommand())
        {
            // In the order they were first put: SQLite's rowid, PostgreSQL's seq (an upsert keeps both).
            command.CommandText = _database.IsPostgres ? "SELECT bus, rule, target FROM event_targets ORDER BY seq;" : "SELECT bus, rule, target FROM event_targets ORDER BY rowid;";
            using var reader = command.ExecuteReader();
            while (reader.Read())
            {
                var key = (reader.GetString(0), reader.GetString(1));
                if (!targets.TryGetValue(key, out var list))
                {
                    targets[key] = list = [];
                }
                list.Add(JsonSerializer.Deserialize(reader.GetString(2), LaminaJsonContext.Default.TargetDto)!);
            }
        }
        var rules = ImmutableSortedDictionary.CreateBuilder<(string, string), EventRule>();
        using (var command = connection.CreateCommand())
        {
            command.CommandText = "SELECT bus, name, event_pattern, schedule, state, description, role_arn FROM event_rules;";
            using var reader = command.ExecuteReader();
            while (reader.Read())
            {
                var (bus, name) = (reader.GetString(0), reader.GetString(1));
                var patternText = reader.IsDBNull(2) ? null : reader.GetString(2);
                var scheduleText = reader.IsDBNull(3) ? null : reader.GetString(3);
                rules[(bus, name)] = new EventRule(bus, name, patternText, patternText is null ? null : EventPattern.Parse(patternText, out _),
                    scheduleText, scheduleText is null ? null : ScheduleExpression.Parse(scheduleText), reader.GetString(4),
                    reader.IsDBNull(5) ? null : reader.GetString(5), reader.IsDBNull(6) ? null : reader.GetString(6),
                    targets.TryGetValue((bus, name), out var list) ? [.. list] : []);
            }
        }
        _buses = buses.ToImmutable();
        _rules = rules.ToImmutable();
    }

    /// <summary>
    /// Runs one change under the write lock, in one transaction (<see cref="ClusterLock.ChangeAsync"/>); the in-memory
    /// snapshot changes inside it and is put back if the change fails.
    /// </summary>
    private async Task<T> WriteAsync<T>(Func<DbConnection, DbTransaction, T> change)
    {
        await _writeLock.WaitAsync();
        var (buses, rules) = (_buses, _rules);
        try
        {
            return await ClusterLock.ChangeAsync(_database, _cluster, ClusterLock.Events, ClusterNode.EventsChannel, "events", () =>
            {
                Load();
                (buses, rules) = (_buses, _rules);
            }, change);
        }
        catch
        {
            (_buses, _rules) = (buses, rules); // nothing half-applied in memory either
            throw;
        }
        finally
        {
            _writeLock.Release();
            await ClusterLock.LeaveIoThread();
        }
    }

    /// <summary>Runs a statement with positional parameters (<see cref="Sql.Positional"/>) in the write's transaction.</summary>
    private static void Execute(DbConnection connection, DbTransaction transaction, string sql, params object?[] values)
    {
        using var command = Sql.Positional(connection, sql, values);
        command.Transaction = transaction;
        command.ExecuteNonQuery();
    }

    internal static bool IsJson(string text)
    {
        try
        {
            using var _ = JsonDocument.Parse(text);
            return true;
        }
        catch (JsonException)
        {
            return false;
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventIds.EventDelivered, LogLevel.Debug, "Event {EventId} matched {Rule}: queued for {Target}")]
        public static partial void Delivered(ILogger logger, string eventId, string rule, string target);

        [LoggerMessage(EventIds.EventTargetMissing, LogLevel.Warning, "Rule {Rule} has a target that does not exist: {Target}; the event is not delivered to it")]
        public static partial void TargetMissing(ILogger logger, string rule, string target);

        [LoggerMessage(EventIds.EventTargetNotPermitted, LogLevel.Warning,
            "Rule {Rule} may not invoke {Target}: no statement of its resource policy allows events.amazonaws.com (aws lambda add-permission --principal events.amazonaws.com --source-arn <rule arn>); the event is not delivered to it")]
        public static partial void NotPermitted(ILogger logger, string rule, string target);

        [LoggerMessage(EventIds.ScheduleFailed, LogLevel.Error, "Firing the schedules failed; they are tried again in a second")]
        public static partial void ScheduleFailed(ILogger logger, Exception error);

        [LoggerMessage(EventIds.ClusterLeaseAcquired, LogLevel.Information, "Node {NodeId} holds the schedules lease: it fires the cluster's schedules")]
        public static partial void ScheduleLeaseAcquired(ILogger logger, string nodeId);

        [LoggerMessage(EventIds.ClusterLeaseLost, LogLevel.Warning, "Node {NodeId} no longer holds the schedules lease: another node fires the schedules")]
        public static partial void ScheduleLeaseLost(ILogger logger, string nodeId);
    }
}
