using System.Collections.Concurrent;
using System.Text.Json.Nodes;
using Lamina.Server.Hosting;
using Microsoft.Extensions.Options;

namespace Lamina.Server.CloudFormation;

/// <summary>What a request asks a stack to become: its template, parameters and settings.</summary>
internal sealed record StackRequest
{
    public required string StackName { get; init; }
    public string? TemplateBody { get; init; }
    public string? TemplateUrl { get; init; }
    public bool UsePreviousTemplate { get; init; }
    public List<ParameterInput> Parameters { get; init; } = [];
    public List<string> Capabilities { get; init; } = [];
    public List<StackTag>? Tags { get; init; }
    public List<string> NotificationArns { get; init; } = [];
    public string? RoleArn { get; init; }
    public bool DisableRollback { get; init; }
    public bool TerminationProtection { get; init; }
    public string? ClientRequestToken { get; init; }
}

/// <summary>A template made ready to deploy: processed, checked, its parameters resolved.</summary>
internal sealed record PreparedTemplate(string Body, JsonObject Processed, StackTemplate Template, List<StackParameter> Parameters, List<string> Imports);

/// <summary>
/// The stack engine: change sets, and the operations that make a stack's resources match its template — create,
/// update (in place, or by replacement, then a cleanup phase), delete, and the rollbacks — with the statuses and
/// events CloudFormation reports. Independent resources are provisioned in parallel, in the order their references
/// and DependsOn give. Every step is stored before the next; at start, an operation a crash interrupted is rolled back
/// (or, for deletes and cleanups, finished), so no stack stays half made.
/// </summary>
/// <remarks>
/// On a cluster (issue #25) the stacks are on PostgreSQL and their operations run on one node, the holder of the
/// <see cref="Lease"/> lease; the other nodes forward every CloudFormation request to it
/// (<see cref="Storage.LeaseForwarder"/>). When a node gains the lease it recovers the unfinished operations as a
/// restart does; when it loses it, its operations stop where they are (and <see cref="StackStore"/>'s fence keeps them
/// from writing), for the new holder to finish.
/// </remarks>
internal sealed partial class StackEngine : IHostedService, IDisposable
{
    /// <summary>The cluster lease whose holder runs the stack operations and answers the CloudFormation API.</summary>
    public const string Lease = "cloudformation";

    /// <summary>How long CreateStack, UpdateStack, ExecuteChangeSet and DeleteStack wait for the operation to end before answering.</summary>
    /// <remarks>
    /// CloudFormation answers at once and clients poll, but the AWS CLI's waiters poll every 30 s (5 s for change sets):
    /// a stack of Lamina's resources is usually done in well under a second, so answering when it is done (bounded) lets
    /// `aws cloudformation deploy` and `wait stack-create-complete` see the end at their first poll.
    /// </remarks>
    public static readonly TimeSpan AnswerWait = TimeSpan.FromSeconds(10);

    private readonly StackStore _store;
    private readonly LoopbackClient _client;
    private readonly LaminaOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger<StackEngine> _logger;
    private readonly IHostApplicationLifetime _lifetime;
    private readonly Dictionary<string, ResourceProvider> _providers;
    private readonly ConcurrentDictionary<string, Task> _operations = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _stopping = new();
    private readonly Lock _gate = new();
    private readonly Storage.ClusterNode _cluster;
    private CancellationTokenSource _tenure; // cancelled when the server stops or (on a cluster) this node loses the lease
    private volatile bool _recovered;        // on a cluster: this node holds the lease and has recovered the operations

    public StackEngine(StackStore store, LoopbackClient client, IOptions<LaminaOptions> options, TimeProvider time, ILogger<StackEngine> logger,
        IHostApplicationLifetime lifetime, Storage.ClusterNode cluster)
    {
        _store = store;
        _cluster = cluster;
        _tenure = CancellationTokenSource.CreateLinkedTokenSource(_stopping.Token);
        _client = client;
        _options = options.Value;
        _time = time;
        _logger = logger;
        _lifetime = lifetime;
        _providers = ResourceProviders.All().ToDictionary(static p => p.Type, StringComparer.Ordinal);
    }

    public StackStore Store => _store;

    public string AccountId => _options.AccountId;

    public string Region => _options.Region;

    public IReadOnlyDictionary<string, ResourceProvider> Providers => _providers;

    /// <summary>Whether this node answers CloudFormation requests: always on a single machine; on a cluster, while it holds the lease and has recovered.</summary>
    public bool Serving => !_cluster.Enabled || (_recovered && _cluster.Holds(Lease));

    /// <summary>Whether <paramref name="forwarder"/> handed the request to the node that runs the stack operations (false: this node answers it).</summary>
    public Task<bool> ForwardedAsync(Storage.LeaseForwarder forwarder, HttpContext context, ReadOnlyMemory<byte> body) =>
        forwarder.ForwardedAsync(context, Lease, () => Serving, static context =>
        {
            const string Message = "No node of the cluster runs CloudFormation at the moment (it is failing over); retry the request.";
            return context.Request.Headers.ContainsKey("X-Amz-Target") // CodeDeploy's hook verdicts: awsJson
                ? new Protocols.AwsError(503, "ServiceUnavailableException", Message).ExecuteAsync(context)
                : CloudFormationApi.WriteErrorAsync(context, new CloudFormationException("ServiceUnavailable", Message, 503));
        }, body);

    public Task StartAsync(CancellationToken cancellationToken)
    {
        // Recovery calls the server's own APIs: only once it listens.
        if (_cluster.Enabled)
        {
            _cluster.RequestLease(Lease);
            _lifetime.ApplicationStarted.Register(() => _cluster.Heartbeat += FollowLeaseAsync);
        }
        else
        {
            _lifetime.ApplicationStarted.Register(() => _ = Task.Run(() => Recover("Lamina restarted while the operation was in progress")));
        }
        return Task.CompletedTask;
    }

    /// <summary>
    /// After each heartbeat: a node that gained the lease recovers the unfinished operations (once those it ran under an
    /// earlier lease have stopped); one that lost it stops its operations where they are.
    /// </summary>
    private async Task FollowLeaseAsync()
    {
        await Hosting.IoThreads.LeaveIoThreadAsync(); // the heartbeat may go on on a socket's I/O thread; recovery reads the store, which blocks
        var holds = _cluster.Holds(Lease);
        if (holds && !_recovered && _operations.IsEmpty && !_stopping.IsCancellationRequested)
        {
            _tenure.Dispose();
            _tenure = CancellationTokenSource.CreateLinkedTokenSource(_stopping.Token);
            Recover("The node running the operation stopped while it was in progress");
            _recovered = true;
        }
        else if (!holds && _recovered)
        {
            _recovered = false;
            _tenure.Cancel();
            Log.LeaseLost(_logger);
        }
    }

    public void Dispose()
    {
        _tenure.Dispose();
        _stopping.Dispose();
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        await _stopping.CancelAsync();
        // Operations stop where they are: every finished step is stored, and the next start rolls the rest back.
        await Task.WhenAll(_operations.Values).WaitAsync(TimeSpan.FromSeconds(5), cancellationToken).ContinueWith(static _ => { }, TaskScheduler.Default);
    }

    /// <summary>Finishes the operations that were in progress when their node stopped: creates and updates roll back, the rest completes.</summary>
    private void Recover(string reason)
    {
        foreach (var stack in _store.AllStacks().Where(static s => s.DeletedAt is null && s.Status.EndsWith("_IN_PROGRESS", StringComparison.Ordinal) && s.Status != "REVIEW_IN_PROGRESS"))
        {
            Log.Recovering(_logger, stack.StackName, stack.Status);
            Start(stack.StackId, stack.Status switch
            {
                "CREATE_IN_PROGRESS" => run => CreateFailedAsync(run, reason),
                "ROLLBACK_IN_PROGRESS" => run => CreateFailedAsync(run, stack.StatusReason ?? reason),
                "UPDATE_IN_PROGRESS" or "UPDATE_ROLLBACK_IN_PROGRESS" => run => UpdateRollbackAsync(run, stack.Status == "UPDATE_IN_PROGRESS" ? reason : stack.StatusReason ?? reason),
                "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS" => UpdateCleanupAsync,
                "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS" => UpdateRollbackCleanupAsync,
                _ => DeleteRunAsync,
            });
        }
    }

    /// <summary>Waits (at most <see cref="AnswerWait"/>) for the stack's operation to end.</summary>
    public async Task WaitBrieflyAsync(string stackId, CancellationToken cancellationToken)
    {
        if (_operations.TryGetValue(stackId, out var operation))
        {
            await operation.WaitAsync(AnswerWait, cancellationToken).ContinueWith(static _ => { }, TaskScheduler.Default);
        }
    }

    public bool IsBusy(string stackId) => _operations.ContainsKey(stackId);

    // ---- preparing templates ------------------------------------------------------------------------------------------

    /// <summary>The template body a request names: inline, from Lamina's S3 (TemplateURL), or the stack's previous one.</summary>
    public async Task<string> TemplateBodyAsync(StackRequest request, StackRecord? existing, CancellationToken cancellationToken)
    {
        var given = (request.TemplateBody is not null ? 1 : 0) + (request.TemplateUrl is not null ? 1 : 0) + (request.UsePreviousTemplate ? 1 : 0);
        if (given != 1)
        {
            throw CloudFormationException.Validation(given == 0
                ? "Either Template URL or Template Body must be specified."
                : "Specify exactly one of TemplateBody, TemplateURL and UsePreviousTemplate.");
        }
        if (request.UsePreviousTemplate)
        {
            return existing?.TemplateBody ?? throw CloudFormationException.Validation("UsePreviousTemplate can only be used on an existing stack");
        }
        if (request.TemplateBody is { } body)
        {
            if (body.Length > 51_200)
            {
                throw CloudFormationException.Validation($"1 validation error detected: Value '{body[..40]}…' at 'templateBody' failed to satisfy constraint: Member must have length less than or equal to 51200");
            }
            return body;
        }
        return await FetchTemplateAsync(request.TemplateUrl!, cancellationToken);
    }

    /// <summary>
    /// A TemplateURL's template, read from Lamina's S3: <c>https://s3.amazonaws.com/bucket/key</c>,
    /// <c>https://bucket.s3.amazonaws.com/key</c>, <c>s3://bucket/key</c> or a URL of this server — whichever host it
    /// names, the object is Lamina's (the AWS CLI builds these URLs from its S3 client's endpoint).
    /// </summary>
    private async Task<string> FetchTemplateAsync(string url, CancellationToken cancellationToken)
    {
        if (!Uri.TryCreate(url, UriKind.Absolute, out var uri))
        {
            throw CloudFormationException.Validation("TemplateURL must be a supported URL.");
        }
        string bucket, key;
        var path = uri.AbsolutePath.TrimStart('/');
        var hostBucket = uri.Host.IndexOf(".s3", StringComparison.Ordinal) is > 0 and var at ? uri.Host[..at] : null;
        if (uri.Scheme == "s3")
        {
            (bucket, key) = (uri.Host, path);
        }
        else if (hostBucket is not null)
        {
            (bucket, key) = (hostBucket, path);
        }
        else
        {
            var slash = path.IndexOf('/', StringComparison.Ordinal);
            if (slash <= 0)
            {
                throw CloudFormationException.Validation("TemplateURL must reference a valid S3 object to which you have access.");
            }
            (bucket, key) = (path[..slash], path[(slash + 1)..]);
        }
        try
        {
            var query = System.Web.HttpUtility.ParseQueryString(uri.Query)["versionId"] is { } version ? "?versionId=" + Uri.EscapeDataString(version) : "";
            var bytes = await _client.S3Async(HttpMethod.Get, "/" + bucket + "/" + key + query, null, cancellationToken);
            if (bytes.Length > 1_048_576)
            {
                throw CloudFormationException.Validation("Template may not exceed 1048576 bytes in size.");
            }
            return System.Text.Encoding.UTF8.GetString(bytes);
        }
        catch (ServiceException e)
        {
            throw CloudFormationException.Validation($"TemplateURL must reference a valid S3 object to which you have access. ({e.Code}: {e.Message})");
        }
    }

    /// <summary>Reads, transforms and checks a template, and resolves its parameters; a ValidationError when it cannot be deployed.</summary>
    public PreparedTemplate Prepare(string body, string stackName, string stackId, IReadOnlyList<ParameterInput> parameters, IReadOnlyList<StackParameter>? previous,
        IReadOnlyList<string> capabilities, bool changeSet)
    {
        var root = TemplateReader.Read(body);
        var processed = Transform(root, stackName, parameters, previous, capabilities, changeSet);
        var template = StackTemplate.Parse(processed);
        var values = template.ResolveParameters(parameters, previous);
        var intrinsics = Context(template, stackName, stackId, values, _ => null, allowUnresolved: true);
        var active = template.ActiveResources(intrinsics);
        var unsupported = active.Select(static r => r.Type).Where(t => !_providers.ContainsKey(t)).Distinct().ToList();
        if (unsupported.Count > 0)
        {
            throw CloudFormationException.Validation($"Template format error: Unrecognized resource types: [{string.Join(", ", unsupported)}] (Lamina deploys: {string.Join(", ", _providers.Keys.Order(StringComparer.Ordinal))})");
        }
        StackTemplate.Dependencies(active, intrinsics);
        CheckAttributes(template, active);
        CheckCapabilities(active, capabilities);
        var imports = new List<string>();
        CollectImports(processed, intrinsics, imports);
        var exports = _store.Exports().Select(static e => e.Name).ToHashSet(StringComparer.Ordinal);
        if (imports.FirstOrDefault(i => !exports.Contains(i)) is { } missing)
        {
            throw CloudFormationException.Validation($"No export named {missing} found.");
        }
        return new PreparedTemplate(body, processed, template, values, imports);
    }

    private JsonObject Transform(JsonObject root, string stackName, IReadOnlyList<ParameterInput> parameters, IReadOnlyList<StackParameter>? previous,
        IReadOnlyList<string> capabilities, bool changeSet)
    {
        var transforms = root["Transform"] switch
        {
            null => [],
            JsonValue v => [Intrinsics.Stringify(v)],
            JsonArray a => a.Select(Intrinsics.Stringify).ToList(),
            _ => throw CloudFormationException.Validation("Template format error: Transform must be a string or a list of strings"),
        };
        foreach (var name in transforms)
        {
            if (name != SamTransform.Name)
            {
                throw CloudFormationException.Validation($"Template format error: Lamina runs the transform {SamTransform.Name} only, not {name}");
            }
        }
        if (transforms.Count == 0)
        {
            return root;
        }
        if (!changeSet && !capabilities.Contains("CAPABILITY_AUTO_EXPAND"))
        {
            // As CloudFormation: a transform needs this acknowledgement on CreateStack / UpdateStack; change sets show what it made.
            throw new CloudFormationException("InsufficientCapabilitiesException", "Requires capabilities : [CAPABILITY_AUTO_EXPAND]");
        }
        var given = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var parameter in parameters)
        {
            if (parameter.UsePreviousValue && previous?.FirstOrDefault(p => p.Key == parameter.Key) is { } old)
            {
                given[parameter.Key] = old.Value;
            }
            else if (parameter.Value is not null)
            {
                given[parameter.Key] = parameter.Value;
            }
        }
        return new SamTransform(stackName, _options.Region, _options.AccountId, given).Apply(root);
    }

    /// <summary>IAM resources need CAPABILITY_IAM (CAPABILITY_NAMED_IAM when they are named), as on AWS.</summary>
    private static void CheckCapabilities(List<ResourceDefinition> active, IReadOnlyList<string> capabilities)
    {
        var iam = active.Where(static r => r.Type.StartsWith("AWS::IAM::", StringComparison.Ordinal)).ToList();
        var named = iam.Any(static r => r.Properties.ContainsKey("RoleName") || r.Properties.ContainsKey("ManagedPolicyName") || r.Properties.ContainsKey("UserName")
            || r.Properties.ContainsKey("GroupName") || r.Properties.ContainsKey("InstanceProfileName"));
        if (named && !capabilities.Contains("CAPABILITY_NAMED_IAM"))
        {
            throw new CloudFormationException("InsufficientCapabilitiesException", "Requires capabilities : [CAPABILITY_NAMED_IAM]");
        }
        if (iam.Count > 0 && !capabilities.Contains("CAPABILITY_IAM") && !capabilities.Contains("CAPABILITY_NAMED_IAM"))
        {
            throw new CloudFormationException("InsufficientCapabilitiesException", "Requires capabilities : [CAPABILITY_IAM]");
        }
    }

    private void CheckAttributes(StackTemplate template, List<ResourceDefinition> active)
    {
        var types = active.ToDictionary(static r => r.LogicalId, static r => r.Type, StringComparer.Ordinal);
        void Check(string logicalId, string attribute)
        {
            if (types.TryGetValue(logicalId, out var type) && _providers[type].AttributeNames is { Count: > 0 } names && !names.Contains(attribute))
            {
                throw CloudFormationException.Validation($"Template error: resource {logicalId} does not support attribute type {attribute} in Fn::GetAtt");
            }
        }
        void Walk(JsonNode? node)
        {
            switch (node)
            {
                case JsonObject o when o.Count == 1 && o.First() is ("Fn::GetAtt", var argument):
                    {
                        var (logicalId, attribute) = CloudFormation.Intrinsics.GetAttArguments(argument);
                        if (attribute is JsonValue v && v.TryGetValue<string>(out var name))
                        {
                            Check(logicalId, name);
                        }
                        break;
                    }
                case JsonObject o when o.Count == 1 && o.First() is ("Fn::Sub", var argument):
                    if ((argument is JsonArray { Count: 2 } pair ? pair[0] : argument) is JsonValue t && t.TryGetValue<string>(out var text))
                    {
                        foreach (var (_, variable) in CloudFormation.Intrinsics.SubParts(text))
                        {
                            if (variable?.IndexOf('.', StringComparison.Ordinal) is > 0 and var dot && !variable.StartsWith("AWS::", StringComparison.Ordinal))
                            {
                                Check(variable[..dot], variable[(dot + 1)..]);
                            }
                        }
                    }
                    if (argument is JsonArray { Count: 2 } withVariables)
                    {
                        Walk(withVariables[1]);
                    }
                    break;
                case JsonObject o:
                    foreach (var (_, value) in o)
                    {
                        Walk(value);
                    }
                    break;
                case JsonArray a:
                    foreach (var value in a)
                    {
                        Walk(value);
                    }
                    break;
            }
        }
        foreach (var resource in active)
        {
            Walk(resource.Properties);
        }
        Walk(template.Outputs);
    }

    private static void CollectImports(JsonNode? node, Intrinsics intrinsics, List<string> into)
    {
        switch (node)
        {
            case JsonObject o when o.Count == 1 && o.First() is ("Fn::ImportValue", var argument):
                try
                {
                    var name = CloudFormation.Intrinsics.Stringify(intrinsics.Resolve(argument));
                    if (!name.Contains(CloudFormation.Intrinsics.Unresolved, StringComparison.Ordinal))
                    {
                        into.Add(name);
                    }
                }
                catch (CloudFormationException)
                {
                }
                break;
            case JsonObject o:
                foreach (var (_, value) in o)
                {
                    CollectImports(value, intrinsics, into);
                }
                break;
            case JsonArray a:
                foreach (var value in a)
                {
                    CollectImports(value, intrinsics, into);
                }
                break;
        }
    }

    /// <summary>The intrinsic functions' context for a stack; resources come from <paramref name="resource"/>.</summary>
    public Intrinsics Context(StackTemplate template, string stackName, string stackId, IEnumerable<StackParameter> parameters,
        Func<string, ResourceValues?> resource, bool allowUnresolved)
    {
        var exports = _store.Exports().ToDictionary(static e => e.Name, static e => e.Value, StringComparer.Ordinal);
        var ids = template.Resources.Select(static r => r.Key).ToHashSet(StringComparer.Ordinal);
        return new Intrinsics
        {
            AccountId = _options.AccountId,
            Region = _options.Region,
            StackName = stackName,
            StackId = stackId,
            Parameters = template.ParameterValues(parameters),
            Mappings = template.Mappings,
            ConditionDefinitions = template.Conditions,
            ResourceIds = ids,
            Resource = resource,
            Import = name => exports.GetValueOrDefault(name),
            AllowUnresolved = allowUnresolved,
        };
    }

    public string NewStackId(string name) => $"arn:aws:cloudformation:{_options.Region}:{_options.AccountId}:stack/{name}/{Guid.NewGuid()}";

    public string NewChangeSetId(string name) => $"arn:aws:cloudformation:{_options.Region}:{_options.AccountId}:changeSet/{name}/{Guid.NewGuid()}";

    // ---- change sets ---------------------------------------------------------------------------------------------------

    /// <summary>
    /// The changes <paramref name="prepared"/> would make to a stack whose resources are <paramref name="current"/>, as
    /// DescribeChangeSet lists them. Resources that would be added or replaced make their dependents' values unknown
    /// until the change set runs ("Dynamic").
    /// </summary>
    public JsonArray ComputeChanges(StackRecord stack, PreparedTemplate prepared, IReadOnlyList<ResourceRecord> current)
    {
        var records = current.Where(static r => r.PhysicalId is not null).ToDictionary(static r => r.LogicalId, StringComparer.Ordinal);
        var unknown = new HashSet<string>(StringComparer.Ordinal);
        var intrinsics = Context(prepared.Template, stack.StackName, stack.StackId, prepared.Parameters,
            id => !unknown.Contains(id) && records.TryGetValue(id, out var r) ? Values(r) : null, allowUnresolved: true);
        var active = prepared.Template.ActiveResources(intrinsics);
        var dependencies = StackTemplate.Dependencies(active, intrinsics);
        var changes = new JsonArray();
        foreach (var resource in TopologicalOrder(active, dependencies))
        {
            if (!records.TryGetValue(resource.LogicalId, out var existing))
            {
                unknown.Add(resource.LogicalId);
                changes.Add(Change("Add", resource.LogicalId, null, resource.Type, null, []));
                continue;
            }
            var after = intrinsics.Resolve(resource.Properties) as JsonObject ?? [];
            var before = JsonNode.Parse(existing.Properties) as JsonObject ?? [];
            if (existing.Type == resource.Type && JsonNode.DeepEquals(before, after) && existing.DeletionPolicy == resource.DeletionPolicy)
            {
                continue;
            }
            var provider = _providers[resource.Type];
            var replace = existing.Type != resource.Type || provider.RequiresReplacement(before, after);
            var dynamic = after.ToJsonString().Contains(CloudFormation.Intrinsics.Unresolved, StringComparison.Ordinal);
            if (replace)
            {
                unknown.Add(resource.LogicalId);
            }
            var details = new JsonArray();
            foreach (var name in before.Select(static p => p.Key).Union(after.Select(static p => p.Key)).Distinct(StringComparer.Ordinal))
            {
                if (JsonNode.DeepEquals(before[name], after[name]))
                {
                    continue;
                }
                var valueDynamic = after[name]?.ToJsonString().Contains(CloudFormation.Intrinsics.Unresolved, StringComparison.Ordinal) ?? false;
                details.Add(new JsonObject
                {
                    ["Target"] = new JsonObject
                    {
                        ["Attribute"] = "Properties",
                        ["Name"] = name,
                        ["RequiresRecreation"] = provider.RequiresReplacement(new JsonObject { [name] = before[name]?.DeepClone() }, new JsonObject { [name] = after[name]?.DeepClone() })
                            ? "Always" : "Never",
                    },
                    ["Evaluation"] = valueDynamic ? "Dynamic" : "Static",
                    ["ChangeSource"] = valueDynamic ? "ResourceReference" : "DirectModification",
                });
            }
            changes.Add(Change("Modify", resource.LogicalId, existing.PhysicalId, resource.Type,
                replace ? (dynamic && existing.Type == resource.Type ? "Conditional" : "True") : "False", details));
        }
        var activeIds = active.Select(static r => r.LogicalId).ToHashSet(StringComparer.Ordinal);
        foreach (var record in current.Where(r => !activeIds.Contains(r.LogicalId)))
        {
            changes.Add(Change("Remove", record.LogicalId, record.PhysicalId, record.Type, null, []));
        }
        return changes;
    }

    private static JsonObject Change(string action, string logicalId, string? physicalId, string type, string? replacement, JsonArray details)
    {
        var change = new JsonObject
        {
            ["Action"] = action,
            ["LogicalResourceId"] = logicalId,
            ["ResourceType"] = type,
            ["Scope"] = new JsonArray(),
            ["Details"] = details,
        };
        if (physicalId is not null)
        {
            change["PhysicalResourceId"] = physicalId;
        }
        if (replacement is not null)
        {
            change["Replacement"] = replacement;
            if (details.Count > 0)
            {
                change["Scope"] = new JsonArray(JsonValue.Create("Properties"));
            }
        }
        return new JsonObject { ["Type"] = "Resource", ["ResourceChange"] = change };
    }

    public static ResourceValues Values(ResourceRecord record) =>
        new(record.PhysicalId ?? "", (JsonNode.Parse(record.Attributes) as JsonObject ?? []).ToDictionary(static p => p.Key, static p => p.Value?.DeepClone(), StringComparer.Ordinal));

    public static List<ResourceDefinition> TopologicalOrder(List<ResourceDefinition> resources, Dictionary<string, List<string>> dependencies)
    {
        var byId = resources.ToDictionary(static r => r.LogicalId, StringComparer.Ordinal);
        var done = new HashSet<string>(StringComparer.Ordinal);
        var order = new List<ResourceDefinition>();
        void Visit(string id)
        {
            if (!done.Add(id))
            {
                return;
            }
            foreach (var dependency in dependencies[id])
            {
                Visit(dependency);
            }
            order.Add(byId[id]);
        }
        foreach (var resource in resources)
        {
            Visit(resource.LogicalId);
        }
        return order;
    }

    // ---- running operations --------------------------------------------------------------------------------------------

    /// <summary>Starts an operation on a stack unless one runs; false when the stack is busy.</summary>
    public bool Start(string stackId, Func<StackRun, Task> operation)
    {
        lock (_gate)
        {
            if (_operations.ContainsKey(stackId))
            {
                return false;
            }
            var stack = _store.FindStack(stackId)!;
            var run = new StackRun(this, stack);
            var tenure = Stopping;
            var task = Task.Run(async () =>
            {
                try
                {
                    await operation(run);
                }
                catch (Exception e) when (e is StackLeaseLostException || (e is OperationCanceledException && tenure.IsCancellationRequested))
                {
                    // Shutting down, or another node took the lease: the stored state says where to resume.
                }
                catch (Exception e)
                {
                    Log.OperationFailed(_logger, stack.StackName, e);
                    try
                    {
                        run.SetStatus(run.Stack.Status.StartsWith("DELETE", StringComparison.Ordinal) ? "DELETE_FAILED"
                            : run.Stack.Status.StartsWith("UPDATE", StringComparison.Ordinal) ? "UPDATE_ROLLBACK_FAILED" : "ROLLBACK_FAILED",
                            "Internal failure: " + e.Message);
                    }
                    catch (Exception again) when (again is System.Data.Common.DbException or InvalidOperationException)
                    {
                        Log.OperationFailed(_logger, stack.StackName, again);
                    }
                }
                finally
                {
                    lock (_gate)
                    {
                        _operations.TryRemove(stackId, out _);
                    }
                }
            });
            _operations[stackId] = task;
            return true;
        }
    }

    /// <summary>Cancelled when the server stops or this node loses the cluster's lease: operations stop where they are.</summary>
    internal CancellationToken Stopping => _tenure.Token;

    internal DateTimeOffset Now => _time.GetUtcNow();

    internal LoopbackClient Client => _client;

    private static partial class Log
    {
        [LoggerMessage(EventId = Diagnostics.EventIds.StackOperationFailed, Level = LogLevel.Error, Message = "Stack {Stack}: the operation failed unexpectedly")]
        public static partial void OperationFailed(ILogger logger, string stack, Exception error);

        [LoggerMessage(EventId = Diagnostics.EventIds.StackRecovering, Level = LogLevel.Warning, Message = "Stack {Stack} was {Status} when the server (or the cluster's node running it) stopped; finishing it (a create or update rolls back)")]
        public static partial void Recovering(ILogger logger, string stack, string status);

        [LoggerMessage(EventId = Diagnostics.EventIds.StackLeaseLost, Level = LogLevel.Warning, Message = "This node no longer holds the cloudformation lease: its stack operations are left to the new holder")]
        public static partial void LeaseLost(ILogger logger);

        [LoggerMessage(EventId = Diagnostics.EventIds.StackResourceFailed, Level = LogLevel.Debug, Message = "Stack {Stack}: {LogicalId} ({Type}) {Status}: {Reason}")]
        public static partial void ResourceFailed(ILogger logger, string stack, string logicalId, string type, string status, string reason);

        [LoggerMessage(EventId = Diagnostics.EventIds.StackCompleted, Level = LogLevel.Information, Message = "Stack {Stack}: {Status}")]
        public static partial void Completed(ILogger logger, string stack, string status);
    }

    internal void LogResourceFailed(string stack, string logicalId, string type, string status, string reason) => Log.ResourceFailed(_logger, stack, logicalId, type, status, reason);

    internal void LogCompleted(string stack, string status) => Log.Completed(_logger, stack, status);

    internal static string Json(JsonNode? node) => node?.ToJsonString() ?? "{}";

    internal static JsonObject Object(string json) => JsonNode.Parse(json) as JsonObject ?? [];
}
