using System.Text.Json.Serialization;

namespace Lamina.Server.CloudFormation;

/// <summary>A stack as stored: what DescribeStacks reports, its templates, and the operation in flight (if any).</summary>
internal sealed record StackRecord
{
    public required string StackId { get; init; }
    public required string StackName { get; init; }
    public required string Status { get; init; }
    public string? StatusReason { get; init; }
    public required DateTimeOffset CreatedAt { get; init; }
    public DateTimeOffset? UpdatedAt { get; init; }
    public DateTimeOffset? DeletedAt { get; init; }
    public string? Description { get; init; }

    /// <summary>The template as submitted (JSON or YAML text): GetTemplate's Original stage.</summary>
    public string TemplateBody { get; init; } = "";

    /// <summary>The template after transforms, as JSON: GetTemplate's Processed stage and what the engine deploys.</summary>
    public string ProcessedTemplate { get; init; } = "{}";

    public List<StackParameter> Parameters { get; init; } = [];
    public List<StackOutput> Outputs { get; init; } = [];
    public List<StackTag> Tags { get; init; } = [];
    public List<string> Capabilities { get; init; } = [];
    public List<string> NotificationArns { get; init; } = [];
    public string? RoleArn { get; init; }
    public bool DisableRollback { get; init; }
    public bool TerminationProtection { get; init; }

    /// <summary>The change set this stack's last operation ran (DescribeStacks' ChangeSetId).</summary>
    public string? ChangeSetId { get; init; }

    /// <summary>The exports this stack's template imports (Fn::ImportValue): they cannot be deleted while it does.</summary>
    public List<string> Imports { get; init; } = [];

    /// <summary>Set while an update runs: what to roll back to, and what to delete once it is over.</summary>
    public StackOperation? Operation { get; init; }
}

/// <summary>A parameter as the stack holds it: the value given (NoEcho ones are masked when described).</summary>
internal sealed record StackParameter(string Key, string Value, bool NoEcho);

internal sealed record StackOutput(string Key, string Value, string? Description, string? ExportName);

internal sealed record StackTag(string Key, string Value);

/// <summary>An update's memory: the previous template and parameters, and resources to delete at cleanup.</summary>
internal sealed record StackOperation
{
    public required string Kind { get; init; }
    public string PreviousTemplateBody { get; init; } = "";
    public string PreviousProcessedTemplate { get; init; } = "{}";
    public List<StackParameter> PreviousParameters { get; init; } = [];
    public List<StackOutput> PreviousOutputs { get; init; } = [];
    public string? PreviousDescription { get; init; }

    /// <summary>Physical resources to delete in the cleanup phase (old ones after success, new ones after a rollback).</summary>
    public List<ResourceSnapshot> Garbage { get; init; } = [];
}

/// <summary>One physical resource as it was deployed: enough to update it back, or to delete it.</summary>
internal sealed record ResourceSnapshot
{
    public required string LogicalId { get; init; }
    public required string Type { get; init; }
    public string? PhysicalId { get; init; }
    public string Properties { get; init; } = "{}";
    public string Attributes { get; init; } = "{}";
    public string? DeletionPolicy { get; init; }
    public List<string> Dependencies { get; init; } = [];
}

/// <summary>A resource of a stack: its current physical resource and, during an update, what it was before.</summary>
internal sealed record ResourceRecord
{
    public required string LogicalId { get; init; }
    public required string Type { get; init; }
    public string? PhysicalId { get; init; }
    public required string Status { get; init; }
    public string? StatusReason { get; init; }
    public required DateTimeOffset UpdatedAt { get; init; }

    /// <summary>The properties as resolved when the resource was last created or updated (JSON object).</summary>
    public string Properties { get; init; } = "{}";

    /// <summary>What <c>Fn::GetAtt</c> answers (JSON object).</summary>
    public string Attributes { get; init; } = "{}";

    public string? Metadata { get; init; }
    public string? DeletionPolicy { get; init; }
    public string? UpdateReplacePolicy { get; init; }

    /// <summary>The logical ids this resource refers to or depends on: deletion goes in the reverse order.</summary>
    public List<string> Dependencies { get; init; } = [];

    /// <summary>During an update: "created", "updated" or "replaced" (how to roll it back); null otherwise.</summary>
    public string? Change { get; init; }

    /// <summary>During an update: the resource before it ("updated": its old properties; "replaced": the old physical resource).</summary>
    public ResourceSnapshot? Previous { get; init; }

    public ResourceSnapshot Snapshot() => new()
    {
        LogicalId = LogicalId, Type = Type, PhysicalId = PhysicalId, Properties = Properties, Attributes = Attributes, DeletionPolicy = DeletionPolicy,
        Dependencies = Dependencies,
    };
}

/// <summary>One stack event (DescribeStackEvents), newest first when listed.</summary>
internal sealed record StackEventRecord(string EventId, string StackId, string StackName, string LogicalResourceId, string? PhysicalResourceId,
    string ResourceType, DateTimeOffset Timestamp, string ResourceStatus, string? ResourceStatusReason, string? ResourceProperties, string? ClientRequestToken);

/// <summary>A change set: the template and parameters it would deploy and the changes it found.</summary>
internal sealed record ChangeSetRecord
{
    public required string ChangeSetId { get; init; }
    public required string ChangeSetName { get; init; }
    public required string StackId { get; init; }
    public required string StackName { get; init; }
    public required string ChangeSetType { get; init; }
    public required string Status { get; init; }
    public string? StatusReason { get; init; }
    public required string ExecutionStatus { get; init; }
    public required DateTimeOffset CreatedAt { get; init; }
    public string? Description { get; init; }
    public string TemplateBody { get; init; } = "";
    public string ProcessedTemplate { get; init; } = "{}";
    public List<StackParameter> Parameters { get; init; } = [];
    public List<StackTag> Tags { get; init; } = [];
    public List<string> Capabilities { get; init; } = [];
    public List<string> NotificationArns { get; init; } = [];
    public string? RoleArn { get; init; }

    /// <summary>The Changes list as DescribeChangeSet reports it (JSON array of ResourceChange objects).</summary>
    public string Changes { get; init; } = "[]";
}

[JsonSourceGenerationOptions(DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(StackRecord))]
[JsonSerializable(typeof(ResourceRecord))]
[JsonSerializable(typeof(StackEventRecord))]
[JsonSerializable(typeof(ChangeSetRecord))]
internal sealed partial class StackJsonContext : JsonSerializerContext;
