namespace Lamina.Server.Lambda;

/// <summary>
/// The desired state of one function version (<c>$LATEST</c> or a published version), immutable. An update of
/// <c>$LATEST</c> produces a new instance with a new <see cref="RevisionId"/>; a published version is one instance
/// for its whole life. Environments are started for exactly one instance and never serve another, so a warm
/// environment can never run stale code or configuration, nor another version's.
/// </summary>
internal sealed record FunctionConfig
{
    /// <summary>
    /// The registry key (<see cref="Hosting.LaminaOptions.FunctionKey"/>): the bare name in the server's own account,
    /// <c>account:name</c> in another. What callers see is <see cref="FunctionName"/>.
    /// </summary>
    public required string Name { get; init; }

    /// <summary>The function's name as its callers know it (the key without an account).</summary>
    public string FunctionName => Name[(Name.IndexOf(':', StringComparison.Ordinal) + 1)..];

    /// <summary>The account of a function of another account than the server's; null for the server's own.</summary>
    public string? ForeignAccount => Name.IndexOf(':', StringComparison.Ordinal) is var colon and > 0 ? Name[..colon] : null;

    /// <summary><c>$LATEST</c> or a published version number.</summary>
    public string Version { get; init; } = "$LATEST";

    public required string Runtime { get; init; }
    public required string Role { get; init; }
    public required string Handler { get; init; }
    public string Description { get; init; } = "";

    /// <summary>Seconds, 1–900.</summary>
    public int Timeout { get; init; } = 3;

    /// <summary>MB, 128–10240.</summary>
    public int MemorySize { get; init; } = 128;

    /// <summary>MB of <c>/tmp</c>, 512–10240.</summary>
    public int EphemeralStorageSize { get; init; } = 512;

    public string Architecture { get; init; } = "x86_64";

    public IReadOnlyDictionary<string, string> EnvironmentVariables { get; init; } = new Dictionary<string, string>();

    /// <summary>Base64 SHA-256 of the zip, as Lambda reports it.</summary>
    public required string CodeSha256 { get; init; }

    /// <summary>Bytes of the zip.</summary>
    public required long CodeSize { get; init; }

    public required DateTimeOffset LastModified { get; init; }

    /// <summary>Changes on every update; used for optimistic concurrency and to tell environments apart.</summary>
    public required string RevisionId { get; init; }

    public string TracingMode { get; init; } = "PassThrough";

    /// <summary>Text or JSON.</summary>
    public string LogFormat { get; init; } = "Text";

    public string? LogGroup { get; init; }

    /// <summary>Only with the JSON log format: TRACE, DEBUG, INFO, WARN, ERROR or FATAL.</summary>
    public string? ApplicationLogLevel { get; init; }

    /// <summary>Only with the JSON log format: DEBUG, INFO or WARN.</summary>
    public string? SystemLogLevel { get; init; }

    /// <summary>SQS queue or SNS topic ARN for events that failed every async attempt; null when none.</summary>
    public string? DeadLetterTargetArn { get; init; }

    /// <summary>Layer versions merged into <c>/opt</c> in this order (later wins); empty when none. At most 5.</summary>
    public IReadOnlyList<FunctionLayer> Layers { get; init; } = [];

    /// <summary>Set for a durable function (its invocations start durable executions); null for every other one.</summary>
    public DurableSettings? Durable { get; init; }

    public string LogGroupName => LogGroup ?? $"/aws/lambda/{FunctionName}";

    /// <summary>Where the log store keeps the group: its name, prefixed with the account for another account's function.</summary>
    public string LogGroupKey => ForeignAccount is { } account ? $"{account}:{LogGroupName}" : LogGroupName;

    /// <summary>Hex SHA-256 of the zip: the key of its extracted tree in the code store.</summary>
    public string CodeHashHex => Convert.ToHexStringLower(Convert.FromBase64String(CodeSha256));
}

/// <summary>
/// One layer version a function uses, as it was when the function's configuration named it: what Lambda reports
/// (<c>Layers: [{Arn, CodeSize}]</c>) and the content hash of its zip, which keeps finding its files after the layer
/// version itself is deleted.
/// </summary>
internal sealed record FunctionLayer(string Arn, long CodeSize, string CodeSha256)
{
    /// <summary>Hex SHA-256 of the layer's zip: the key of its extracted tree in the code store.</summary>
    public string CodeHashHex => Convert.ToHexStringLower(Convert.FromBase64String(CodeSha256));
}

/// <summary>A durable function's settings: an execution's limit in seconds (1–31,622,400) and its retention in days (1–90).</summary>
internal sealed record DurableSettings(int ExecutionTimeout, int RetentionPeriodInDays)
{
    /// <summary>Lambda's defaults when DurableConfig leaves a member out (<c>unconfirmed</c>: one day, 14 days).</summary>
    public const int DefaultExecutionTimeout = 86_400;
    public const int DefaultRetentionPeriodInDays = 14;
}
