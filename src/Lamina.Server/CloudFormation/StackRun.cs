using System.Text.Json.Nodes;

namespace Lamina.Server.CloudFormation;

/// <summary>
/// One operation on one stack while it runs: the stack and its resources in memory, every change written through to
/// <see cref="StackStore"/> at once (resources change in parallel, under one lock), and the events it reports.
/// </summary>
internal sealed class StackRun
{
    private readonly StackEngine _engine;
    private readonly Lock _lock = new();
    private readonly Dictionary<string, ResourceRecord> _resources;

    public StackRun(StackEngine engine, StackRecord stack)
    {
        _engine = engine;
        Stack = stack;
        _resources = engine.Store.Resources(stack.StackId).ToDictionary(static r => r.LogicalId, StringComparer.Ordinal);
    }

    public StackRecord Stack { get; private set; }

    public StackEngine Engine => _engine;

    public ResourceRecord? Resource(string logicalId)
    {
        lock (_lock)
        {
            return _resources.GetValueOrDefault(logicalId);
        }
    }

    public List<ResourceRecord> Resources()
    {
        lock (_lock)
        {
            return [.. _resources.Values];
        }
    }

    public void Save(ResourceRecord resource)
    {
        lock (_lock)
        {
            _engine.Store.SaveResource(Stack.StackId, resource);
            _resources[resource.LogicalId] = resource;
        }
    }

    public void Remove(string logicalId)
    {
        lock (_lock)
        {
            _engine.Store.RemoveResource(Stack.StackId, logicalId);
            _resources.Remove(logicalId);
        }
    }

    public void SaveStack(StackRecord stack)
    {
        lock (_lock)
        {
            _engine.Store.SaveStack(stack);
            Stack = stack;
        }
    }

    /// <summary>Sets the stack's status and reports it as a stack event.</summary>
    public void SetStatus(string status, string? reason)
    {
        lock (_lock)
        {
            var stack = Stack with { Status = status, StatusReason = reason };
            _engine.Store.SaveStack(stack);
            Stack = stack;
        }
        StackEvent(status, reason);
        if (!status.EndsWith("_IN_PROGRESS", StringComparison.Ordinal))
        {
            _engine.LogCompleted(Stack.StackName, status);
        }
    }

    public void StackEvent(string status, string? reason) =>
        Event(Stack.StackName, Stack.StackId, "AWS::CloudFormation::Stack", status, reason, null);

    public void Event(string logicalId, string? physicalId, string type, string status, string? reason, string? properties) =>
        _engine.Store.AddEvent(new StackEventRecord(Guid.NewGuid().ToString(), Stack.StackId, Stack.StackName, logicalId, physicalId, type, _engine.Now, status, reason,
            properties, null));

    /// <summary>The values <c>Ref</c> and <c>Fn::GetAtt</c> see of a resource that exists now.</summary>
    public ResourceValues? Values(string logicalId) =>
        Resource(logicalId) is { PhysicalId: not null } record && record.Status is not ("CREATE_FAILED" or "CREATE_IN_PROGRESS") ? StackEngine.Values(record) : null;

    public ProvisionRequest Request(string logicalId, JsonObject properties, string? physicalId, string suffix, JsonObject? previousProperties = null,
        JsonObject? previousAttributes = null) => new()
        {
            LogicalId = logicalId,
            StackName = Stack.StackName,
            StackId = Stack.StackId,
            AccountId = _engine.AccountId,
            Region = _engine.Region,
            Properties = properties,
            PhysicalId = physicalId,
            PreviousProperties = previousProperties,
            PreviousAttributes = previousAttributes,
            NameSuffix = suffix,
            Client = _engine.Client,
        };
}
