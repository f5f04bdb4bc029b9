using System.Collections.Concurrent;
using System.Data.Common;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Lamina.Server.Diagnostics;
using Lamina.Server.Hosting;
using Lamina.Server.Protocols;
using Lamina.Server.Storage;
using Microsoft.Extensions.Options;

namespace Lamina.Server.ApiGateway;

/// <summary>
/// API Gateway's state (issue #22): HTTP and REST APIs, the snapshots their deployments froze, API keys and usage
/// plans. Kept in <c>lamina.db</c> beside the functions (one file, so a template deployment (#23) can write functions
/// and APIs in one transaction, and one schema history for the PostgreSQL port): an API is one JSON document (the
/// API and everything in it, rewritten on each change: APIs are small and change at human pace), a deployment's snapshot
/// a row of its own (written once). Everything is also in memory: the control plane reads from there, and the data
/// plane serves compiled tables (<see cref="LiveApi"/>) rebuilt after each change.
/// </summary>
/// <remarks>
/// <para>
/// Writes are serialised by one lock; each is one transaction, committed before memory changes, so a change that was
/// answered survives kill -9 and a failed one leaves nothing.
/// </para>
/// Several nodes (issue #25): the tables live on the cluster's PostgreSQL; a write takes the cluster's lock, rereads
/// what it changes first and announces itself on <see cref="ClusterNode.ApisChannel"/>, and the other nodes reread
/// that API (or the keys and plans) when they hear of it, or everything when they reconnect. The data plane keeps
/// reading memory only. Per node: authorizers' cached results, usage plans' throttles and quota counts
/// (<see cref="UsagePlans"/>), access logs.
/// </remarks>
internal sealed partial class ApiRegistry : IHostedService, IDisposable
{
    private const string IdAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789";

    private readonly Database _database;
    private readonly ClusterNode _cluster;
    private readonly TimeProvider _time;
    private readonly LaminaOptions _options;
    private readonly ILogger<ApiRegistry> _logger;
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private readonly ConcurrentDictionary<string, StoredHttpApi> _http = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, StoredRestApi> _rest = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, ApiKey> _keys = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, UsagePlan> _plans = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<(string Api, string Deployment), string> _snapshots = new();
    private readonly ConcurrentDictionary<string, LiveApi> _live = new(StringComparer.Ordinal);

    public ApiRegistry(Database database, ClusterNode cluster, TimeProvider time, IOptions<LaminaOptions> options, ILogger<ApiRegistry> logger)
    {
        _database = database;
        _cluster = cluster;
        _time = time;
        _options = options.Value;
        _logger = logger;
    }

    public IEnumerable<StoredHttpApi> HttpApis => _http.Values;

    public IEnumerable<StoredRestApi> RestApis => _rest.Values;

    public IEnumerable<ApiKey> ApiKeys => _keys.Values;

    public IEnumerable<UsagePlan> UsagePlans => _plans.Values;

    public bool TryGetHttp(string id, out StoredHttpApi api) => _http.TryGetValue(id, out api!);

    public bool TryGetRest(string id, out StoredRestApi api) => _rest.TryGetValue(id, out api!);

    public bool TryGetKey(string id, out ApiKey key) => _keys.TryGetValue(id, out key!);

    public bool TryGetPlan(string id, out UsagePlan plan) => _plans.TryGetValue(id, out plan!);

    /// <summary>What the data plane serves for <paramref name="apiId"/> (either kind), if anything.</summary>
    public bool TryGetLive(string apiId, out LiveApi live) => _live.TryGetValue(apiId, out live!);

    /// <summary>The snapshot a deployment froze (JSON), if the API has that deployment.</summary>
    public string? SnapshotJson(string apiId, string deploymentId) => _snapshots.TryGetValue((apiId, deploymentId), out var json) ? json : null;

    /// <summary>A new id as API Gateway's: ten lower-case letters and digits.</summary>
    public static string NewId(int length = 10) => RandomNumberGenerator.GetString(IdAlphabet, length);

    public DateTimeOffset Now()
    {
        var now = _time.GetUtcNow();
        return new DateTimeOffset(now.Ticks - now.Ticks % TimeSpan.TicksPerSecond, TimeSpan.Zero); // API Gateway's timestamps have whole seconds
    }

    public Task StartAsync(CancellationToken cancellationToken)
    {
        if (_cluster.Enabled)
        {
            // Listening before the first read: a change made meanwhile is reread after it (rereads wait for the lock).
            _cluster.Follow(ClusterNode.ApisChannel, RereadAsync);
        }
        _writeLock.Wait(cancellationToken);
        try
        {
            LoadAll();
        }
        finally
        {
            _writeLock.Release();
        }
        Log.Loaded(_logger, _http.Count, _rest.Count);
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public void Dispose() => _writeLock.Dispose();

    private const string Http = "HTTP";
    private const string Rest = "REST";

    // What a change announces (ClusterNode.ApisChannel): one API by id (with its deployments), or the keys and plans
    // (few and small, and a key's deletion changes plans too: they are reread together).
    private const string ApiSubject = "a:";
    private const string KeysSubject = "k";

    /// <summary>
    /// Creates (with <paramref name="create"/>) or changes the HTTP API <paramref name="apiId"/>: <paramref name="edit"/>
    /// changes <see cref="HttpApiEdit.Api"/> or returns an error (then nothing is written). After it, every stage with
    /// AutoDeploy whose deployment no longer serves what the API holds gets a new deployment, as API Gateway does.
    /// </summary>
    public Task<(T? Result, AwsError? Error)> EditHttpAsync<T>(string apiId, Func<HttpApiEdit, (T? Result, AwsError? Error)> edit,
        StoredHttpApi? create = null) =>
        WriteAsync<(T?, AwsError?)>(ApiSubject + apiId, () => ReadApi(apiId), () =>
        {
            StoredHttpApi? current;
            if (create is not null)
            {
                current = create;
            }
            else if (!_http.TryGetValue(apiId, out current))
            {
                return ((default, ApiErrors.ApiNotFound(_options.AccountId, apiId)), null);
            }
            var change = new HttpApiEdit(this, current);
            var (result, error) = edit(change);
            if (error is not null)
            {
                return ((default, error), null);
            }
            AutoDeploy(change);
            var document = Serialize(change.Api, ApiGatewayJsonContext.Default.StoredHttpApi);
            return ((result, null), new Write(
                (connection, transaction) => Commit(connection, transaction, apiId, Http, document, change.Added, change.Removed),
                () =>
                {
                    Remember(apiId, change.Added, change.Removed);
                    _http[apiId] = change.Api;
                    Rebuild(apiId);
                }));
        });

    /// <summary>Creates (with <paramref name="create"/>) or changes the REST API <paramref name="apiId"/>, as <see cref="EditHttpAsync"/>.</summary>
    public Task<(T? Result, AwsError? Error)> EditRestAsync<T>(string apiId, Func<RestApiEdit, (T? Result, AwsError? Error)> edit,
        StoredRestApi? create = null) =>
        WriteAsync<(T?, AwsError?)>(ApiSubject + apiId, () => ReadApi(apiId), () =>
        {
            StoredRestApi? current;
            if (create is not null)
            {
                current = create;
            }
            else if (!_rest.TryGetValue(apiId, out current))
            {
                return ((default, ApiErrors.ApiNotFound(_options.AccountId, apiId)), null);
            }
            var change = new RestApiEdit(this, current);
            var (result, error) = edit(change);
            if (error is not null)
            {
                return ((default, error), null);
            }
            var document = Serialize(change.Api, ApiGatewayJsonContext.Default.StoredRestApi);
            return ((result, null), new Write(
                (connection, transaction) => Commit(connection, transaction, apiId, Rest, document, change.Added, change.Removed),
                () =>
                {
                    Remember(apiId, change.Added, change.Removed);
                    _rest[apiId] = change.Api;
                    Rebuild(apiId);
                }));
        });

    /// <summary>Deletes an API of either kind with its deployments; false when there is none.</summary>
    public Task<bool> DeleteApiAsync(string apiId, bool http) =>
        WriteAsync(ApiSubject + apiId, () => ReadApi(apiId), () =>
        {
            if (http ? !_http.ContainsKey(apiId) : !_rest.ContainsKey(apiId))
            {
                return (false, null);
            }
            return (true, new Write(
                // Deployments go with it (ON DELETE CASCADE).
                (connection, transaction) => Execute(connection, transaction, "DELETE FROM apigw_apis WHERE id = $1;", apiId),
                () =>
                {
                    Forget(apiId);
                    Log.Deleted(_logger, apiId);
                }));
        });

    /// <summary>
    /// Creates or changes the API key <paramref name="id"/>: <paramref name="change"/> gets the stored key (null when
    /// there is none) under the write lock and returns the key to store, or an error (then nothing is written).
    /// </summary>
    public Task<(ApiKey? Value, AwsError? Error)> ChangeKeyAsync(string id, Func<ApiKey?, (ApiKey? Next, AwsError? Error)> change) =>
        ChangeAsync("apigw_api_keys", id, _keys, ApiGatewayJsonContext.Default.ApiKey, change);

    /// <summary>Creates or changes the usage plan <paramref name="id"/>, as <see cref="ChangeKeyAsync"/>.</summary>
    public Task<(UsagePlan? Value, AwsError? Error)> ChangePlanAsync(string id, Func<UsagePlan?, (UsagePlan? Next, AwsError? Error)> change) =>
        ChangeAsync("apigw_usage_plans", id, _plans, ApiGatewayJsonContext.Default.UsagePlan, change);

    /// <summary>Deletes an API key and takes it out of every usage plan, in one transaction.</summary>
    public Task<bool> DeleteKeyAsync(string id) =>
        WriteAsync(KeysSubject, ReadKeysAndPlans, () =>
        {
            if (!_keys.ContainsKey(id))
            {
                return (false, null);
            }
            var plans = _plans.Values.Where(p => p.KeyIds?.Contains(id) == true).Select(p => p with { KeyIds = [.. p.KeyIds!.Where(k => k != id)] }).ToList();
            return (true, new Write(
                (connection, transaction) =>
                {
                    Execute(connection, transaction, "DELETE FROM apigw_api_keys WHERE id = $1;", id);
                    foreach (var plan in plans)
                    {
                        Execute(connection, transaction, "UPDATE apigw_usage_plans SET document = $2 WHERE id = $1;",
                            plan.Id!, Serialize(plan, ApiGatewayJsonContext.Default.UsagePlan));
                    }
                },
                () =>
                {
                    _keys.TryRemove(id, out _);
                    foreach (var plan in plans)
                    {
                        _plans[plan.Id!] = plan;
                    }
                }));
        });

    public Task<bool> DeletePlanAsync(string id) =>
        WriteAsync(KeysSubject, ReadKeysAndPlans, () =>
        {
            if (!_plans.ContainsKey(id))
            {
                return (false, null);
            }
            return (true, new Write(
                (connection, transaction) => Execute(connection, transaction, "DELETE FROM apigw_usage_plans WHERE id = $1;", id),
                () => _plans.TryRemove(id, out _)));
        });

    private Task<(T? Value, AwsError? Error)> ChangeAsync<T>(string table, string id, ConcurrentDictionary<string, T> memory, JsonTypeInfo<T> typeInfo,
        Func<T?, (T? Next, AwsError? Error)> change) where T : class =>
        WriteAsync<(T?, AwsError?)>(KeysSubject, ReadKeysAndPlans, () =>
        {
            var (next, error) = change(memory.GetValueOrDefault(id));
            if (error is not null || next is null)
            {
                return ((null, error), null);
            }
            var document = Serialize(next, typeInfo);
            return ((next, null), new Write(
                (connection, transaction) => Execute(connection, transaction,
                    $"INSERT INTO {table} (id, document) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET document = excluded.document;", id, document),
                () => memory[id] = next));
        });

    /// <summary>What a change writes (in one transaction) and then does to memory (once committed).</summary>
    private sealed record Write(Action<DbConnection, DbTransaction> Statements, Action Apply);

    /// <summary>
    /// Runs one change under the write lock: <paramref name="decide"/> looks at memory and returns the answer and what
    /// to write (null: nothing, as for an error); the write is one transaction, committed before memory changes, so a
    /// change that was answered survives kill -9 and a failed one leaves nothing. In a cluster the transaction is the
    /// cluster lock's: <paramref name="reread"/> first brings memory up to what the other nodes wrote, so that neither
    /// of two nodes writing at once loses the other's change, and the commit announces <paramref name="subject"/>.
    /// </summary>
    private async Task<T> WriteAsync<T>(string subject, Action reread, Func<(T Result, Write? Write)> decide)
    {
        await _writeLock.WaitAsync();
        try
        {
            if (!_cluster.Enabled)
            {
                var (result, write) = decide();
                if (write is not null)
                {
                    using (var connection = _database.Open())
                    using (var transaction = connection.BeginTransaction())
                    {
                        write.Statements(connection, transaction);
                        transaction.Commit(); // durable here (synchronous=FULL); memory follows
                    }
                    write.Apply();
                }
                return result;
            }
            var held = (await ClusterLock.AcquireAsync(_database, ClusterLock.Apis))!;
            var heldConnection = held.Connection!; // the transaction forgets it once committed
            try
            {
                // Off the socket's I/O thread (Hosting/IoThreads.cs): the reread and the statements block.
                var (result, write) = await Task.Run(() =>
                {
                    reread();
                    var decided = decide();
                    decided.Write?.Statements(held.Connection!, held);
                    return decided;
                }, CancellationToken.None);
                if (write is not null)
                {
                    await ClusterLock.ReleaseAsync(held, ClusterNode.ApisChannel, _cluster.Payload(subject));
                    write.Apply();
                }
                return result;
            }
            finally
            {
                await heldConnection.DisposeAsync(); // done already, unless nothing was written or the write failed (then rolled back)
            }
        }
        finally
        {
            _writeLock.Release();
            if (_cluster.Enabled)
            {
                await ClusterLock.LeaveIoThread();
            }
        }
    }

    /// <summary>Another node changed <paramref name="subject"/> (null: anything, after a lost connection): reread it.</summary>
    private async Task RereadAsync(string? subject)
    {
        // One at a time, and never during this node's own write: the last reread applies the latest state.
        await _writeLock.WaitAsync(CancellationToken.None);
        try
        {
            if (subject is not null && subject.StartsWith(ApiSubject, StringComparison.Ordinal))
            {
                ReadApi(subject[ApiSubject.Length..]);
            }
            else if (subject == KeysSubject)
            {
                ReadKeysAndPlans();
            }
            else
            {
                LoadAll();
            }
        }
        catch (Exception e) when (e is DbException or JsonException)
        {
            Log.RereadFailed(_logger, subject ?? "everything", e.Message); // reread again when the next change or reconnection is heard
        }
        finally
        {
            _writeLock.Release();
        }
    }

    /// <summary>Reads everything (at start, or after the cluster's notifications may have been missed); what is gone is forgotten.</summary>
    private void LoadAll()
    {
        using var connection = _database.OpenShared();
        var snapshots = new Dictionary<(string, string), string>();
        using (var select = Sql.Positional(connection, "SELECT api_id, id, snapshot FROM apigw_deployments;"))
        using (var reader = select.ExecuteReader())
        {
            while (reader.Read())
            {
                snapshots[(reader.GetString(0), reader.GetString(1))] = reader.GetString(2);
            }
        }
        var apis = new Dictionary<string, (string Kind, string Document)>(StringComparer.Ordinal);
        using (var select = Sql.Positional(connection, "SELECT id, kind, document FROM apigw_apis;"))
        using (var reader = select.ExecuteReader())
        {
            while (reader.Read())
            {
                apis[reader.GetString(0)] = (reader.GetString(1), reader.GetString(2));
            }
        }
        foreach (var (key, json) in snapshots)
        {
            _snapshots[key] = json;
        }
        foreach (var key in _snapshots.Keys.Where(k => !snapshots.ContainsKey(k)).ToList())
        {
            _snapshots.TryRemove(key, out _);
        }
        foreach (var id in _http.Keys.Concat(_rest.Keys).Where(id => !apis.ContainsKey(id)).ToList())
        {
            Forget(id);
        }
        foreach (var (id, (kind, document)) in apis)
        {
            Apply(id, kind, document);
        }
        ReadKeysAndPlans(connection);
    }

    /// <summary>Rereads one API and its deployments' snapshots (a cluster node, after another node changed it).</summary>
    private void ReadApi(string apiId)
    {
        using var connection = _database.OpenShared();
        (string Kind, string Document)? api = null;
        using (var select = Sql.Positional(connection, "SELECT kind, document FROM apigw_apis WHERE id = $1;", apiId))
        using (var reader = select.ExecuteReader())
        {
            if (reader.Read())
            {
                api = (reader.GetString(0), reader.GetString(1));
            }
        }
        var snapshots = new Dictionary<string, string>(StringComparer.Ordinal);
        using (var select = Sql.Positional(connection, "SELECT id, snapshot FROM apigw_deployments WHERE api_id = $1;", apiId))
        using (var reader = select.ExecuteReader())
        {
            while (reader.Read())
            {
                snapshots[reader.GetString(0)] = reader.GetString(1);
            }
        }
        if (api is not { } found)
        {
            Forget(apiId);
            return;
        }
        foreach (var (id, json) in snapshots)
        {
            _snapshots[(apiId, id)] = json;
        }
        foreach (var key in _snapshots.Keys.Where(k => k.Api == apiId && !snapshots.ContainsKey(k.Deployment)).ToList())
        {
            _snapshots.TryRemove(key, out _);
        }
        Apply(apiId, found.Kind, found.Document);
    }

    /// <summary>Holds a stored API (its snapshots already in memory) and compiles what its stages serve.</summary>
    private void Apply(string apiId, string kind, string document)
    {
        if (kind == Http)
        {
            _http[apiId] = Deserialize(document, ApiGatewayJsonContext.Default.StoredHttpApi);
            _rest.TryRemove(apiId, out _);
        }
        else
        {
            _rest[apiId] = Deserialize(document, ApiGatewayJsonContext.Default.StoredRestApi);
            _http.TryRemove(apiId, out _);
        }
        Rebuild(apiId);
    }

    /// <summary>Raised after an API was deleted (here or, on a cluster, on another node), with its id. Handlers must not throw.</summary>
    public event Action<string>? Deleted;

    /// <summary>Forgets a deleted API: its definition, its snapshots and what it served.</summary>
    private void Forget(string apiId)
    {
        var removed = _http.TryRemove(apiId, out _) | _rest.TryRemove(apiId, out _);
        foreach (var key in _snapshots.Keys.Where(k => k.Api == apiId).ToList())
        {
            _snapshots.TryRemove(key, out _);
        }
        if (_live.TryRemove(apiId, out _) | removed)
        {
            Deleted?.Invoke(apiId);
        }
    }

    private void ReadKeysAndPlans()
    {
        using var connection = _database.OpenShared();
        ReadKeysAndPlans(connection);
    }

    private void ReadKeysAndPlans(DbConnection connection)
    {
        Load(connection, "SELECT id, document FROM apigw_api_keys;", _keys, ApiGatewayJsonContext.Default.ApiKey);
        Load(connection, "SELECT id, document FROM apigw_usage_plans;", _plans, ApiGatewayJsonContext.Default.UsagePlan);
    }

    /// <summary>
    /// Gives the AutoDeploy stages a deployment of what the API holds now, when theirs serves something else (one
    /// deployment for all of them, as API Gateway makes one per change).
    /// </summary>
    private void AutoDeploy(HttpApiEdit change)
    {
        var stages = change.Api.Stages.Where(s => s.AutoDeploy == true).ToList();
        if (stages.Count == 0)
        {
            return;
        }
        var current = Serialize(change.Api.Snapshot(), ApiGatewayJsonContext.Default.HttpApiSnapshot);
        string? deploymentId = null;
        foreach (var stage in stages)
        {
            if (stage.DeploymentId is { } existing && change.SnapshotOf(existing) == current)
            {
                continue;
            }
            deploymentId ??= change.Deploy(description: "Automatic deployment triggered by changes to the Api configuration", auto: true).DeploymentId;
            var updated = stage with
            {
                DeploymentId = deploymentId,
                LastDeploymentStatusMessage = $"Successfully deployed stage with deployment ID '{deploymentId}'",
                LastUpdatedDate = Now(),
            };
            change.Api = change.Api with { Stages = change.Api.Stages.Replace(stage, updated) };
        }
    }

    private static void Commit(DbConnection connection, DbTransaction transaction, string apiId, string kind, string document,
        List<(string Id, string Snapshot)> added, List<string> removed)
    {
        Execute(connection, transaction,
            "INSERT INTO apigw_apis (id, kind, document) VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE SET document = excluded.document;",
            apiId, kind, document);
        foreach (var (id, snapshot) in added)
        {
            Execute(connection, transaction, "INSERT INTO apigw_deployments (api_id, id, snapshot) VALUES ($1, $2, $3);", apiId, id, snapshot);
        }
        foreach (var id in removed)
        {
            Execute(connection, transaction, "DELETE FROM apigw_deployments WHERE api_id = $1 AND id = $2;", apiId, id);
        }
    }

    /// <summary>Memory follows a committed change's deployments.</summary>
    private void Remember(string apiId, List<(string Id, string Snapshot)> added, List<string> removed)
    {
        foreach (var (id, snapshot) in added)
        {
            _snapshots[(apiId, id)] = snapshot;
        }
        foreach (var id in removed)
        {
            _snapshots.TryRemove((apiId, id), out _);
        }
    }

    /// <summary>Compiles what the data plane serves for <paramref name="apiId"/> from its stages and their deployments.</summary>
    private void Rebuild(string apiId)
    {
        LiveApi? live = null;
        try
        {
            if (_http.TryGetValue(apiId, out var http))
            {
                live = LiveApi.Build(http, _options, deployment => SnapshotJson(apiId, deployment) is { } json
                    ? Deserialize(json, ApiGatewayJsonContext.Default.HttpApiSnapshot) : null);
            }
            else if (_rest.TryGetValue(apiId, out var rest))
            {
                live = LiveApi.Build(rest, _options, deployment => SnapshotJson(apiId, deployment) is { } json
                    ? Deserialize(json, ApiGatewayJsonContext.Default.RestApiSnapshot) : null);
            }
        }
        catch (JsonException e)
        {
            Log.SnapshotUnreadable(_logger, apiId, e.Message);
        }
        _live.TryGetValue(apiId, out var before);
        if (live is null)
        {
            _live.TryRemove(apiId, out _);
        }
        else
        {
            _live[apiId] = live;
            if (before is not null)
            {
                ReportNoLongerServed(before, live);
            }
        }
    }

    /// <summary>
    /// Raised when a stage, or a route of a stage, is no longer served (deleted, or deployed again without it), with the
    /// API's id, the stage's name and the route key (null: the whole stage). Handlers must not throw.
    /// </summary>
    public event Action<string, string, string?>? NoLongerServed;

    private void ReportNoLongerServed(LiveApi before, LiveApi after)
    {
        if (NoLongerServed is not { } handler)
        {
            return;
        }
        foreach (var (name, stage) in before.Stages)
        {
            if (!after.Stages.TryGetValue(name, out var now))
            {
                handler(before.ApiId, name, null);
                continue;
            }
            var kept = now.Routes.Values.Select(static r => r.RouteKey).ToHashSet(StringComparer.Ordinal);
            foreach (var route in stage.Routes.Values)
            {
                if (!kept.Contains(route.RouteKey))
                {
                    handler(before.ApiId, name, route.RouteKey);
                }
            }
        }
    }

    internal static string Serialize<T>(T value, JsonTypeInfo<T> typeInfo) => JsonSerializer.Serialize(value, typeInfo);

    internal static T Deserialize<T>(string json, JsonTypeInfo<T> typeInfo) =>
        JsonSerializer.Deserialize(json, typeInfo) ?? throw new JsonException("A stored API Gateway document is null.");

    /// <summary>Replaces <paramref name="into"/>'s contents with the table's rows (what is gone is forgotten).</summary>
    private static void Load<T>(DbConnection connection, string sql, ConcurrentDictionary<string, T> into, JsonTypeInfo<T> typeInfo)
    {
        var rows = new Dictionary<string, T>(StringComparer.Ordinal);
        using (var select = Sql.Positional(connection, sql))
        using (var reader = select.ExecuteReader())
        {
            while (reader.Read())
            {
                rows[reader.GetString(0)] = Deserialize(reader.GetString(1), typeInfo);
            }
        }
        foreach (var (id, value) in rows)
        {
            into[id] = value;
        }
        foreach (var id in into.Keys.Where(id => !rows.ContainsKey(id)).ToList())
        {
            into.TryRemove(id, out _);
        }
    }

    /// <summary>Runs a statement with positional parameters (<see cref="Sql.Positional"/>) in the write's transaction.</summary>
    private static void Execute(DbConnection connection, DbTransaction transaction, string sql, params object?[] values)
    {
        using var command = Sql.Positional(connection, sql, values);
        command.Transaction = transaction;
        command.ExecuteNonQuery();
    }

    private static partial class Log
    {
        [LoggerMessage(EventIds.ApiGatewayLoaded, LogLevel.Information, "Loaded {Http} HTTP APIs and {Rest} REST APIs")]
        public static partial void Loaded(ILogger logger, int http, int rest);

        [LoggerMessage(EventIds.ApiGatewayApiDeleted, LogLevel.Information, "API {ApiId} deleted")]
        public static partial void Deleted(ILogger logger, string apiId);

        [LoggerMessage(EventIds.ApiGatewaySnapshotUnreadable, LogLevel.Error, "A deployment of API {ApiId} cannot be read ({Reason}); its stages serve nothing until it is deployed again")]
        public static partial void SnapshotUnreadable(ILogger logger, string apiId, string reason);

        [LoggerMessage(EventIds.ApiGatewayRereadFailed, LogLevel.Warning, "Rereading {Subject} of API Gateway after another node's change failed ({Reason}); it is reread at the next change or reconnection")]
        public static partial void RereadFailed(ILogger logger, string subject, string reason);
    }
}

/// <summary>One change to an HTTP API in progress: the API as it becomes, and the deployments made or removed on the way.</summary>
internal sealed class HttpApiEdit(ApiRegistry registry, StoredHttpApi api)
{
    public StoredHttpApi Api { get; set; } = api;

    internal List<(string Id, string Snapshot)> Added { get; } = [];

    internal List<string> Removed { get; } = [];

    public DateTimeOffset Now => registry.Now();

    /// <summary>A new deployment of what <see cref="Api"/> holds now (its metadata is added to the API).</summary>
    public HttpDeployment Deploy(string? description, bool auto)
    {
        var deployment = new HttpDeployment
        {
            AutoDeployed = auto,
            CreatedDate = registry.Now(),
            DeploymentId = ApiRegistry.NewId(6),
            DeploymentStatus = "DEPLOYED",
            Description = description,
        };
        Added.Add((deployment.DeploymentId, ApiRegistry.Serialize(Api.Snapshot(), ApiGatewayJsonContext.Default.HttpApiSnapshot)));
        Api = Api with { Deployments = Api.Deployments.Add(deployment) };
        return deployment;
    }

    public void RemoveDeployment(HttpDeployment deployment)
    {
        Removed.Add(deployment.DeploymentId!);
        Api = Api with { Deployments = Api.Deployments.Remove(deployment) };
    }

    /// <summary>The snapshot (JSON) of a deployment, made in this change or before.</summary>
    public string? SnapshotOf(string deploymentId)
    {
        foreach (var (id, snapshot) in Added)
        {
            if (id == deploymentId)
            {
                return snapshot;
            }
        }
        return registry.SnapshotJson(Api.Api.ApiId!, deploymentId);
    }
}

/// <summary>One change to a REST API in progress, as <see cref="HttpApiEdit"/>.</summary>
internal sealed class RestApiEdit(ApiRegistry registry, StoredRestApi api)
{
    public StoredRestApi Api { get; set; } = api;

    internal List<(string Id, string Snapshot)> Added { get; } = [];

    internal List<string> Removed { get; } = [];

    public DateTimeOffset Now => registry.Now();

    /// <summary>A new deployment of what <see cref="Api"/> holds now (its metadata is added to the API).</summary>
    public RestDeployment Deploy(string? description)
    {
        var deployment = new RestDeployment
        {
            Id = ApiRegistry.NewId(6),
            Description = description,
            CreatedDate = registry.Now(),
        };
        Added.Add((deployment.Id, ApiRegistry.Serialize(Api.Snapshot(), ApiGatewayJsonContext.Default.RestApiSnapshot)));
        Api = Api with { Deployments = Api.Deployments.Add(deployment) };
        return deployment;
    }

    public void RemoveDeployment(RestDeployment deployment)
    {
        Removed.Add(deployment.Id!);
        Api = Api with { Deployments = Api.Deployments.Remove(deployment) };
    }
}
