using System.Globalization;

namespace Lamina.Server.Lambda;

// Wire shapes of the function control plane (botocore lambda/2015-03-31 service-2.json). Requests: every member
// optional here (nullable), so that "absent" and "given" can be told apart and the validation answers with AWS's
// messages instead of a deserializer's. Responses: members in the model's order; nulls are not written.

// Registered in LaminaJsonContext.cs (the source generator needs every [JsonSerializable] on one declaration).

/// <summary>The configuration members CreateFunction and UpdateFunctionConfiguration share, validated by one routine.</summary>
internal class FunctionSettingsRequest
{
    public string? Runtime { get; set; }
    public string? Role { get; set; }
    public string? Handler { get; set; }
    public string? Description { get; set; }
    public int? Timeout { get; set; }
    public int? MemorySize { get; set; }
    public VpcConfigDto? VpcConfig { get; set; }
    public DeadLetterConfigDto? DeadLetterConfig { get; set; }
    public EnvironmentDto? Environment { get; set; }
    public string? KMSKeyArn { get; set; }
    public TracingConfigDto? TracingConfig { get; set; }
    public List<string>? Layers { get; set; }
    public List<FileSystemConfigDto>? FileSystemConfigs { get; set; }
    public EphemeralStorageDto? EphemeralStorage { get; set; }
    public SnapStartDto? SnapStart { get; set; }
    public LoggingConfigDto? LoggingConfig { get; set; }
    public DurableConfigDto? DurableConfig { get; set; }
}

internal sealed class CreateFunctionRequest : FunctionSettingsRequest
{
    public string? FunctionName { get; set; }
    public FunctionCodeDto? Code { get; set; }

    /// <summary>Also publish version 1 (the response is then version 1's configuration).</summary>
    public bool? Publish { get; set; }

    public string? PackageType { get; set; }
    public Dictionary<string, string>? Tags { get; set; }
    public string? CodeSigningConfigArn { get; set; }
    public List<string>? Architectures { get; set; }
}

internal sealed class UpdateFunctionCodeRequest
{
    public byte[]? ZipFile { get; set; }
    public string? S3Bucket { get; set; }
    public string? S3Key { get; set; }
    public string? S3ObjectVersion { get; set; }
    public string? ImageUri { get; set; }

    /// <summary>Also publish a version from the updated <c>$LATEST</c> (the response is then that version's configuration).</summary>
    public bool? Publish { get; set; }

    public bool? DryRun { get; set; }
    public string? RevisionId { get; set; }
    public List<string>? Architectures { get; set; }
}

internal sealed class UpdateFunctionConfigurationRequest : FunctionSettingsRequest
{
    public string? RevisionId { get; set; }
}

internal sealed class FunctionCodeDto
{
    public byte[]? ZipFile { get; set; }
    public string? S3Bucket { get; set; }
    public string? S3Key { get; set; }
    public string? S3ObjectVersion { get; set; }
    public string? ImageUri { get; set; }
    public string? SourceKMSKeyArn { get; set; }
}

internal sealed class VpcConfigDto
{
    public List<string>? SubnetIds { get; set; }
    public List<string>? SecurityGroupIds { get; set; }
    public bool? Ipv6AllowedForDualStack { get; set; }
}

internal sealed class DeadLetterConfigDto
{
    public string? TargetArn { get; set; }
}

internal sealed class EnvironmentDto
{
    public Dictionary<string, string?>? Variables { get; set; }
}

internal sealed class TracingConfigDto
{
    public string? Mode { get; set; }
}

internal sealed class FileSystemConfigDto
{
    public string? Arn { get; set; }
    public string? LocalMountPath { get; set; }
}

internal sealed class EphemeralStorageDto
{
    public int? Size { get; set; }
}

internal sealed class SnapStartDto
{
    public string? ApplyOn { get; set; }
}

internal sealed class SnapStartResponseDto
{
    public string ApplyOn { get; set; } = "None";
    public string OptimizationStatus { get; set; } = "Off";
}

internal sealed class LoggingConfigDto
{
    public string? LogFormat { get; set; }
    public string? ApplicationLogLevel { get; set; }
    public string? SystemLogLevel { get; set; }
    public string? LogGroup { get; set; }
}

/// <summary>Durable functions (Lambda API 2025-12-01): how long an execution may run and how long it is kept after.</summary>
internal sealed class DurableConfigDto
{
    public int? RetentionPeriodInDays { get; set; }
    public int? ExecutionTimeout { get; set; }
}

internal sealed class EnvironmentResponseDto
{
    public Dictionary<string, string>? Variables { get; set; }
}

/// <summary>Lambda's <c>FunctionConfiguration</c> (LAMBDA.md §1.2), members in the model's order.</summary>
internal sealed class FunctionConfigurationDto
{
    public string? FunctionName { get; set; }
    public string? FunctionArn { get; set; }
    public string? Runtime { get; set; }
    public string? Role { get; set; }
    public string? Handler { get; set; }
    public long CodeSize { get; set; }
    public string? Description { get; set; }
    public int Timeout { get; set; }
    public int MemorySize { get; set; }
    public string? LastModified { get; set; }
    public string? CodeSha256 { get; set; }
    public string? Version { get; set; }
    public DeadLetterConfigDto? DeadLetterConfig { get; set; }
    public EnvironmentResponseDto? Environment { get; set; }
    public TracingConfigDto? TracingConfig { get; set; }
    public string? RevisionId { get; set; }
    public List<LayerDto>? Layers { get; set; }
    public string? State { get; set; }
    public string? LastUpdateStatus { get; set; }
    public string? PackageType { get; set; }
    public List<string>? Architectures { get; set; }
    public EphemeralStorageDto? EphemeralStorage { get; set; }
    public SnapStartResponseDto? SnapStart { get; set; }
    public LoggingConfigDto? LoggingConfig { get; set; }
    public DurableConfigDto? DurableConfig { get; set; }
}

/// <summary>A layer in a function's configuration: <c>{Arn, CodeSize}</c>.</summary>
internal sealed class LayerDto
{
    public string? Arn { get; set; }
    public long CodeSize { get; set; }
}

internal sealed class FunctionCodeLocationDto
{
    public string? RepositoryType { get; set; }
    public string? Location { get; set; }
}

internal sealed class GetFunctionResponse
{
    public FunctionConfigurationDto? Configuration { get; set; }
    public FunctionCodeLocationDto? Code { get; set; }
    public Dictionary<string, string>? Tags { get; set; }
    public ConcurrencyDto? Concurrency { get; set; }
}

internal sealed class ListFunctionsResponse
{
    public string? NextMarker { get; set; }
    public List<FunctionConfigurationDto> Functions { get; set; } = [];
}

internal static class FunctionConfigurationMapping
{
    /// <summary>
    /// The wire shape of <paramref name="config"/>. <paramref name="functionArn"/> is the unqualified ARN, or the
    /// qualified one (<c>…:$LATEST</c>, <c>…:1</c>, <c>…:alias</c>) when the caller named a qualifier or the
    /// answer is a published version (as Lambda answers).
    /// </summary>
    public static FunctionConfigurationDto ToDto(this FunctionConfig config, string functionArn) => new()
    {
        FunctionName = config.FunctionName,
        FunctionArn = functionArn,
        Runtime = config.Runtime,
        Role = config.Role,
        Handler = config.Handler,
        CodeSize = config.CodeSize,
        Description = config.Description,
        Timeout = config.Timeout,
        MemorySize = config.MemorySize,
        LastModified = FormatTimestamp(config.LastModified),
        CodeSha256 = config.CodeSha256,
        Version = config.Version,
        DeadLetterConfig = config.DeadLetterTargetArn is null ? null : new DeadLetterConfigDto { TargetArn = config.DeadLetterTargetArn },
        Environment = config.EnvironmentVariables.Count == 0
            ? null
            : new EnvironmentResponseDto { Variables = new Dictionary<string, string>(config.EnvironmentVariables, StringComparer.Ordinal) },
        TracingConfig = new TracingConfigDto { Mode = config.TracingMode },
        RevisionId = config.RevisionId,
        Layers = config.Layers.Count == 0 ? null : config.Layers.Select(static l => new LayerDto { Arn = l.Arn, CodeSize = l.CodeSize }).ToList(),
        State = "Active",
        LastUpdateStatus = "Successful",
        PackageType = "Zip",
        Architectures = [config.Architecture],
        EphemeralStorage = new EphemeralStorageDto { Size = config.EphemeralStorageSize },
        SnapStart = new SnapStartResponseDto(),
        LoggingConfig = new LoggingConfigDto
        {
            LogFormat = config.LogFormat,
            ApplicationLogLevel = config.ApplicationLogLevel,
            SystemLogLevel = config.SystemLogLevel,
            LogGroup = config.LogGroupName,
        },
        DurableConfig = config.Durable is { } durable
            ? new DurableConfigDto { RetentionPeriodInDays = durable.RetentionPeriodInDays, ExecutionTimeout = durable.ExecutionTimeout }
            : null,
    };

    /// <summary>Lambda's <c>Timestamp</c> strings: <c>2019-09-24T18:20:35.054+0000</c> (UTC, milliseconds, no colon).</summary>
    public static string FormatTimestamp(DateTimeOffset value) =>
        value.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'+0000'", CultureInfo.InvariantCulture);
}
