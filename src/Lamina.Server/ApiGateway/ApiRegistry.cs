using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Lamina.Server.Diagnostics;
using Lamina.Server.Hosting;
using Lamina.Server.Protocols;
using Lamina.Server.Storage;
using Microsoft.Data.Sqlite;
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
/// Writes are serialised by one lock; each is one transaction, committed before memory changes, so a change that was
/// answered survives kill -9 and a failed one leaves nothing.
/// </remarks>
internal sealed partial class ApiRegistry : IHostedService, IDisposable
{
    private const string IdAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789";

    private readonly Database _database;
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

    public ApiRegistry(Database database, TimeProvider time, IOptions<LaminaOptions> options, ILogger<ApiRegistry> logger)
    {
        _database = database;
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
        using var connection = _database.Open();
        using (var select = connection.CreateCommand())
        {
            select.CommandText = "SELECT api_id, id, snapshot FROM apigw_deployments;";
            using var reader = select.ExecuteReader();
            while (reader.Read())
            {
                _snapshots[(reader.GetString(0), reader.GetString(1))] = reader.GetString(2);
            }
        }
        using (var select = connection.CreateCommand())
        {
            select.CommandText = "SELECT id, kind, document FROM apigw_apis;";
            using var reader = select.ExecuteReader();
            while (reader.Read())
            {
                var id = reader.GetString(0);
                if (reader.GetString(1) == Http)
                {
                    _http[id] = Deserialize(reader.GetString(2), ApiGatewayJsonContext.Default.StoredHttpApi);
                }
                else
                {
                    _rest[id] = Deserialize(reader.GetString(2), ApiGatewayJsonContext.Default.StoredRestApi);
                }
                Rebuild(id);
            }
        }
        Load(connection, "SELECT id, document FROM apigw_api_keys;", _keys, ApiGatewayJsonContext.Default.ApiKey);
        Load(connection, "SELECT id, document FROM apigw_usage_plans;", _plans, ApiGatewayJsonContext.Default.UsagePlan);
        Log.Loaded(_logger, _http.Count, _rest.Count);
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public void Dispose() => _writeLock.Dispose();

    private const string Http = "HTTP";
    private const string Rest = "REST";

    /// <summary>
    /// Creates (with <paramref name="create"/>) or changes the HTTP API <paramref name="apiId"/>: <paramref name="edit"/>
    /// changes <see cref="HttpApiEdit.Api"/> or returns an error (then nothing is written). After it, every stage with
    /// AutoDeploy whose deployment no longer serves what the API holds gets a new deployment, as API Gateway does.
    /// </summary>
    public async Task<(T? Result, AwsError? Error)> EditHttpAsync<T>(string apiId, Func<HttpApiEdit, (T? Result, AwsError? Error)> edit,
        StoredHttpApi? create = null)
    {
        await _writeLock.WaitAsync();
        try
        {
            StoredHttpApi? current;
            if (create is not null)
            {
                current = create;
            }
            else if (!_http.TryGetValue(apiId, out current))
            {
                return (default, ApiErrors.ApiNotFound(_options.AccountId, apiId));
            }
            var change = new HttpApiEdit(this, current);
            var (result, error) = edit(change);
            if (error is not null)
            {
                return (default, error);
            }
            AutoDeploy(change);
            Commit(apiId, Http, Serialize(change.Api, ApiGatewayJsonContext.Default.StoredHttpApi), change.Added, change.Removed);
            _http[apiId] = change.Api;
            Rebuild(apiId);
            return (result, null);
        }
        finally
        {
            _writeLock.Release();
        }
    }

    /// <summary>Creates (with <paramref name="create"/>) or changes the REST API <paramref name="apiId"/>, as <see cref="EditHttpAsync"/>.</summary>
    public async Task<(T? Result, AwsError? Error)> EditRestAsync<T>(string apiId, Func<RestApiEdit, (T? Result, AwsError? Error)> edit,
        StoredRestApi? create = null)
    {
        await _writeLock.WaitAsync();
        try
        {
            StoredRestApi? current;
            if (create is not null)
            {
                current = create;
            }
            else if (!_rest.TryGetValue(apiId, out current))
            {
                return (default, ApiErrors.ApiNotFound(_options.AccountId, apiId));
            }
            var change = new RestApiEdit(this, current);
            var (result, error) = edit(change);
            if (error is not null)
            {
                return (default, error);
            }
            Commit(apiId, Rest, Serialize(change.Api, ApiGatewayJsonContext.Default.StoredRestApi), change.Added, change.Removed);
            _rest[apiId] = change.Api;
            Rebuild(apiId);
            return (result, null);
        }
        finally
        {
            _writeLock.Release();
        }
    }

    /// <summary>Deletes an API of either kind with its deployments; false when there is none.</summary>
    public async Task<bool> DeleteApiAsync(string apiId, bool http)
    {
        await _writeLock.WaitAsync();
        try
        {
            if (http ? !_http.ContainsKey(apiId) : !_rest.ContainsKey(apiId))
            {
                return false;
            }
            using (var connection = _database.Open())
            using (var delete = connection.CreateCommand())
            {
                delete.CommandText = "DELETE FROM apigw_apis WHERE id = $id;"; // deployments go with it (ON DELETE CASCADE)
                delete.Parameters.AddWithValue("$id", apiId);
                delete.ExecuteNonQuery();
            }
            if (http)
            {
                _http.TryRemove(apiId, out _);
            }
            else
            {
                _rest.TryRemove(apiId, out _);
            }
            foreach (var key in _snapshots.Keys.Where(k => k.Api == apiId).ToList())
            {
                _snapshots.TryRemove(key, out _);
            }
            _live.TryRemove(apiId, out _);
            Log.Deleted(_logger, apiId);
            return true;
        }
        finally
        {
            _writeLock.Release();
        }
    }

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
    public async Task<bool> DeleteKeyAsync(string id)
    {
        await _writeLock.WaitAsync();
        try
        {
            if (!_keys.ContainsKey(id))
            {
                return false;
            }
            var plans = _plans.Values.Where(p => p.KeyIds?.Contains(id) == true).Select(p => p with { KeyIds = [.. p.KeyIds!.Where(k => k != id)] }).ToList();
            using var connection = _database.Open();
            using var transaction = connection.BeginTransaction();
            Execute(connection, transaction, "DELETE FROM apigw_api_keys WHERE id = $id;", ("$id", id));
            foreach (var plan in plans)
            {
                Execute(connection, transaction, "UPDATE apigw_usage_plans SET document = $document WHERE id = $id;",
                    ("$id", plan.Id!), ("$document", Serialize(plan, ApiGatewayJsonContext.Default.UsagePlan)));
            }
            transaction.Commit();
            _keys.TryRemove(id, out _);
            foreach (var plan in plans)
            {
                _plans[plan.Id!] = plan;
            }
            return true;
        }
        finally
        {
            _writeLock.Release();
        }
    }

    public async Task<bool> DeletePlanAsync(string id)
    {
        await _writeLock.WaitAsync();
        try
        {
            if (!_plans.ContainsKey(id))
            {
                return false;
            }
            using (var connection = _database.Open())
            {
                Execute(connection, null, "DELETE FROM apigw_usage_plans WHERE id = $id;", ("$id", id));
            }
            _plans.TryRemove(id, out _);
            return true;
        }
        finally
        {
            _writeLock.Release();
        }
    }

    private async Task<(T? Value, AwsError? Error)> ChangeAsync<T>(string table, string id, ConcurrentDictionary<string, T> memory, JsonTypeInfo<T> typeInfo,
        Func<T?, (T? Next, AwsError? Error)> change) where T : class
    {
        await _writeLock.WaitAsync();
        try
        {
            var (next, error) = change(memory.GetValueOrDefault(id));
            if (error is not null || next is null)
            {
                return (null, error);
            }
            using (var connection = _database.Open())
            {
                Execute(connection, null, $"INSERT INTO {table} (id, document) VALUES ($id, $document) ON CONFLICT (id) DO UPDATE SET document = excluded.document;",
                    ("$id", id), ("$document", Serialize(next, typeInfo)));
            }
            memory[id] = next;
            return (next, null);
        }
        finally
        {
            _writeLock.Release();
        }
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

    private void Commit(string apiId, string kind, string document, List<(string Id, string Snapshot)> added, List<string> removed)
    {
        using var connection = _database.Open();
        using var transaction = connection.BeginTransaction();
        Execute(connection, transaction,
            "INSERT INTO apigw_apis (id, kind, document) VALUES ($id, $kind, $document) ON CONFLICT (id) DO UPDATE SET document = excluded.document;",
            ("$id", apiId), ("$kind", kind), ("$document", document));
        foreach (var (id, snapshot) in added)
        {
            Execute(connection, transaction, "INSERT INTO apigw_deployments (api_id, id, snapshot) VALUES ($api, $id, $snapshot);",
                ("$api", apiId), ("$id", id), ("$snapshot", snapshot));
        }
        foreach (var id in removed)
        {
            Execute(connection, transaction, "DELETE FROM apigw_deployments WHERE api_id = $api AND id = $id;", ("$api", apiId), ("$id", id));
        }
        transaction.Commit(); // durable here (synchronous=FULL); memory follows
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
        if (live is null)
        {
            _live.TryRemove(apiId, out _);
        }
        else
        {
            _live[apiId] = live;
        }
    }

    internal static string Serialize<T>(T value, JsonTypeInfo<T> typeInfo) => JsonSerializer.Serialize(value, typeInfo);

    internal static T Deserialize<T>(string json, JsonTypeInfo<T> typeInfo) =>
        JsonSerializer.Deserialize(json, typeInfo) ?? throw new JsonException("A stored API Gateway document is null.");

    private static void Load<T>(SqliteConnection connection, string sql, ConcurrentDictionary<string, T> into, JsonTypeInfo<T> typeInfo)
    {
        using var select = connection.CreateCommand();
        select.CommandText = sql;
        using var reader = select.ExecuteReader();
        while (reader.Read())
        {
            into[reader.GetString(0)] = Deserialize(reader.GetString(1), typeInfo);
        }
    }

    private static void Execute(SqliteConnection connection, SqliteTransaction? transaction, string sql, params (string Name, string Value)[] parameters)
    {
        using var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = sql;
        foreach (var (name, value) in parameters)
        {
            command.Parameters.AddWithValue(name, value);
        }
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
