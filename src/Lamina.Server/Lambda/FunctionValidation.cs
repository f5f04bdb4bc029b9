using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.RegularExpressions;
using Lamina.Server.Hosting;
using Lamina.Server.Invoke;
using Lamina.Server.Protocols;

namespace Lamina.Server.Lambda;

/// <summary>
/// Checks function settings as Lambda does, answering with Lambda's messages. Every refusal is a 400
/// <c>InvalidParameterValueException</c> (Lambda answers some model-constraint failures as ValidationException;
/// both are 400 and the SDKs surface either as a client error), except names, which
/// <see cref="FunctionReference"/> checks. The first problem found is reported.
/// </summary>
/// <remarks>
/// Deliberate choices: <c>arm64</c> is accepted and recorded on any host (scripts in the managed runtimes run the
/// same; native binaries built for arm64 will fail at invoke on an x86-64 host). Settings Lamina cannot honour
/// (Image packages, S3 code, VPC, EFS, SnapStart, code signing) are refused with a message saying so,
/// never silently dropped. <c>KMSKeyArn</c> is accepted and ignored (there is no KMS here). <c>Layers</c> are checked
/// and resolved by <see cref="ResolveLayers"/>, which needs the layer registry.
/// </remarks>
internal static partial class FunctionValidation
{
    /// <summary>Runtimes Lambda has retired for creating and updating functions.</summary>
    private static readonly HashSet<string> DeprecatedRuntimes = new(StringComparer.Ordinal)
    {
        "nodejs", "nodejs4.3", "nodejs4.3-edge", "nodejs6.10", "nodejs8.10", "nodejs10.x", "nodejs12.x", "nodejs14.x", "nodejs16.x",
        "python2.7", "python3.6", "python3.7", "python3.8",
        "dotnetcore1.0", "dotnetcore2.0", "dotnetcore2.1", "dotnetcore3.1", "dotnet6",
        "java8", "go1.x", "ruby2.5", "ruby2.7", "provided",
    };

    /// <summary>Set by Lambda in every environment; a function may not set them (LAMBDA.md §7.1).</summary>
    public static readonly HashSet<string> ReservedEnvironmentKeys = new(StringComparer.Ordinal)
    {
        "_HANDLER", "_X_AMZN_TRACE_ID", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_INITIALIZATION_TYPE", "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
        "AWS_LAMBDA_RUNTIME_API", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR",
    };

    /// <summary>Total size of the environment, measured as Lambda does: the compact JSON of the variables, in UTF-8 bytes.</summary>
    public const int MaxEnvironmentBytes = 4096;

    public const int MaxMemorySize = 10240;
    public const int MinMemorySize = 128;
    public const int MaxTimeout = 900;
    public const int MinEphemeralStorage = 512;
    public const int MaxEphemeralStorage = 10240;
    public const int MaxDescriptionLength = 256;
    public const int MaxHandlerLength = 128;
    public const int MaxTags = 50;

    private const string RolePatternText = @"arn:(aws[a-zA-Z-]*)?:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+";
    private const string EnvironmentKeyPatternText = "[a-zA-Z]([a-zA-Z0-9_])+";
    private const string DeadLetterPatternText = "(arn:(aws[a-zA-Z-]*)?:[a-z0-9-.]+:.*)|()";
    private const string LogGroupPatternText = @"[\.\-_/#A-Za-z0-9]+";

    // The environment as Lambda measures and quotes it: compact JSON, non-ASCII left as is.
    private static readonly JsonSerializerOptions EnvironmentJson = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    [GeneratedRegex(@"^arn:(aws[a-zA-Z-]*)?:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+\z", RegexOptions.CultureInvariant)]
    private static partial Regex RolePattern();

    [GeneratedRegex(@"^[^\s]+\z", RegexOptions.CultureInvariant)]
    private static partial Regex HandlerPattern();

    [GeneratedRegex(@"^[a-zA-Z][a-zA-Z0-9_]+\z", RegexOptions.CultureInvariant)]
    private static partial Regex EnvironmentKeyPattern();

    [GeneratedRegex(@"^((arn:(aws[a-zA-Z-]*)?:[a-z0-9-.]+:.*)|())\z", RegexOptions.CultureInvariant | RegexOptions.Singleline)]
    private static partial Regex DeadLetterPattern();

    [GeneratedRegex(@"^[\.\-_/#A-Za-z0-9]+\z", RegexOptions.CultureInvariant)]
    private static partial Regex LogGroupPattern();

    /// <summary>
    /// Validates a CreateFunction request and builds the new function's configuration, without code (the caller
    /// adds CodeSha256/CodeSize after storing the zip; the registry stamps RevisionId and LastModified).
    /// </summary>
    public static AwsError? ValidateCreate(CreateFunctionRequest request, LaminaOptions options, string account, out FunctionConfig? draft, out Dictionary<string, string> tags)
    {
        draft = null;
        tags = new Dictionary<string, string>(StringComparer.Ordinal);

        if (request.FunctionName is null)
        {
            return NotNull("functionName");
        }
        if (!FunctionReference.TryParse(request.FunctionName, null, options, account, out var reference, out var nameError))
        {
            return nameError;
        }
        if (reference.Qualifier is not null)
        {
            return AwsError.InvalidParameter($"Function name {request.FunctionName} must not include a qualifier when creating a function.");
        }
        if (request.Role is null)
        {
            return NotNull("role");
        }
        if (request.Code is null)
        {
            return NotNull("code");
        }

        if (request.PackageType is not null and not "Zip")
        {
            return request.PackageType == "Image"
                ? AwsError.InvalidParameter("PackageType Image is not supported by Lamina; deploy a .zip package (PackageType Zip).")
                : Enum(request.PackageType, "packageType", "Zip, Image");
        }
        var codeError = ValidateCodeSource(request.Code.ZipFile, request.Code.S3Bucket, request.Code.S3Key, request.Code.S3ObjectVersion, request.Code.ImageUri);
        if (codeError is not null)
        {
            return codeError;
        }
        if (request.Runtime is null || request.Handler is null)
        {
            return AwsError.InvalidParameter("Runtime and Handler are mandatory parameters for functions created with deployment packages.");
        }

        var config = new FunctionConfig
        {
            Name = reference.Name,
            Runtime = "",
            Role = "",
            Handler = "",
            CodeSha256 = "",
            CodeSize = 0,
            LastModified = default,
            RevisionId = "",
        };
        var error = ApplySettings(ref config, request, request.Architectures);
        if (error is not null)
        {
            return error;
        }
        if (!string.IsNullOrEmpty(request.CodeSigningConfigArn))
        {
            return AwsError.InvalidParameter("Code signing is not supported by Lamina; remove CodeSigningConfigArn.");
        }

        if (request.Tags is not null)
        {
            var tagsError = ValidateTags(request.Tags);
            if (tagsError is not null)
            {
                return tagsError;
            }
            foreach (var (key, value) in request.Tags)
            {
                tags[key] = value ?? "";
            }
        }

        draft = config;
        return null;
    }

    /// <summary>
    /// Validates an UpdateFunctionConfiguration request and applies it to <paramref name="config"/> (the current
    /// configuration; some rules depend on it, e.g. log levels need the JSON format). Members absent from the
    /// request keep their value; <c>Environment</c>, when present, replaces the whole variable map.
    /// </summary>
    public static AwsError? ApplyUpdate(ref FunctionConfig config, UpdateFunctionConfigurationRequest request) =>
        ApplySettings(ref config, request, architectures: null);

    /// <summary>Validates UpdateFunctionCode's code source and architecture.</summary>
    public static AwsError? ValidateCodeUpdate(UpdateFunctionCodeRequest request)
    {
        var error = ValidateCodeSource(request.ZipFile, request.S3Bucket, request.S3Key, request.S3ObjectVersion, request.ImageUri);
        if (error is not null)
        {
            return error;
        }
        return request.Architectures is null ? null : ValidateArchitectures(request.Architectures, out _);
    }

    public static AwsError? ValidateArchitectures(List<string> architectures, out string? architecture)
    {
        architecture = null;
        var shown = "[" + string.Join(", ", architectures) + "]";
        if (architectures.Count != 1)
        {
            return AwsError.InvalidParameter(architectures.Count == 0
                ? $"1 validation error detected: Value '{shown}' at 'architectures' failed to satisfy constraint: Member must have length greater than or equal to 1"
                : $"1 validation error detected: Value '{shown}' at 'architectures' failed to satisfy constraint: Member must have length less than or equal to 1");
        }
        if (architectures[0] is not ("x86_64" or "arm64"))
        {
            return AwsError.InvalidParameter(
                $"1 validation error detected: Value '{shown}' at 'architectures' failed to satisfy constraint: Member must satisfy constraint: [Member must satisfy enum value set: [x86_64, arm64]]");
        }
        architecture = architectures[0];
        return null;
    }

    public static AwsError? ValidateRuntime(string runtime)
    {
        if (RuntimeCatalog.IsSupported(runtime))
        {
            return null;
        }
        if (DeprecatedRuntimes.Contains(runtime))
        {
            return AwsError.InvalidParameter(
                $"The runtime parameter of {runtime} is no longer supported for creating or updating AWS Lambda functions. We recommend you use a supported runtime while creating or updating functions.");
        }
        return AwsError.InvalidParameter(
            $"Value {runtime} at 'runtime' failed to satisfy constraint: Member must satisfy enum value set: [{string.Join(", ", RuntimeCatalog.Supported)}] or be a valid ARN");
    }

    /// <summary>Keys, reserved names and the 4 KB limit. Null values count as empty strings.</summary>
    public static AwsError? ValidateEnvironment(IReadOnlyDictionary<string, string?> variables, out Dictionary<string, string> normalised)
    {
        normalised = new Dictionary<string, string>(StringComparer.Ordinal);
        // Reserved keys first: "_HANDLER" would otherwise be reported as a bad key, which hides the real reason.
        var reserved = variables.Keys.Where(ReservedEnvironmentKeys.Contains).Order(StringComparer.Ordinal).ToList();
        if (reserved.Count > 0)
        {
            return AwsError.InvalidParameter(
                "Lambda was unable to configure your environment variables because the environment variables you have provided contains reserved keys that are currently not supported for modification. Reserved keys used in this request: "
                + string.Join(",", reserved));
        }
        foreach (var (key, value) in variables)
        {
            if (!EnvironmentKeyPattern().IsMatch(key))
            {
                return AwsError.InvalidParameter(
                    $"1 validation error detected: Value at 'environment.variables' failed to satisfy constraint: Map keys must satisfy constraint: [Member must satisfy regular expression pattern: {EnvironmentKeyPatternText}]");
            }
            normalised[key] = value ?? "";
        }

        var measured = JsonSerializer.Serialize(normalised, EnvironmentJson);
        if (Encoding.UTF8.GetByteCount(measured) > MaxEnvironmentBytes)
        {
            return AwsError.InvalidParameter(
                $"Lambda was unable to configure your environment variables because the environment variables you have provided exceeded the 4KB limit. String measured: {measured}");
        }
        return null;
    }

    /// <summary>Tag count, key and value lengths (CreateFunction's Tags and TagResource).</summary>
    public static AwsError? ValidateTags(Dictionary<string, string> tags)
    {
        if (tags.Count > MaxTags)
        {
            return AwsError.InvalidParameter($"Number of tags exceeds resource tag limit. A resource can have at most {MaxTags} tags.");
        }
        foreach (var (key, value) in tags)
        {
            if (key.Length is 0 or > 128)
            {
                return AwsError.InvalidParameter($"1 validation error detected: Value '{key}' at 'tags' failed to satisfy constraint: Map keys must have length between 1 and 128");
            }
            if (value is { Length: > 256 })
            {
                return AwsError.InvalidParameter($"1 validation error detected: Value '{value}' at 'tags.{key}' failed to satisfy constraint: Member must have length less than or equal to 256");
            }
        }
        return null;
    }

    private static AwsError? ValidateCodeSource(byte[]? zipFile, string? s3Bucket, string? s3Key, string? s3ObjectVersion, string? imageUri)
    {
        if (imageUri is not null)
        {
            return AwsError.InvalidParameter("Lamina runs .zip packages only; ImageUri (container images) is not supported. Give ZipFile, or S3Bucket and S3Key.");
        }
        return CodeSourceError(zipFile is not null, s3Bucket, s3Key, s3ObjectVersion, "function code");
    }

    /// <summary>A package is either the zip itself or an object in Lamina's S3 (bucket and key, optionally a version), never both.</summary>
    internal static AwsError? CodeSourceError(bool hasZip, string? s3Bucket, string? s3Key, string? s3ObjectVersion, string what)
    {
        var s3 = s3Bucket is not null || s3Key is not null || s3ObjectVersion is not null;
        if (hasZip && s3)
        {
            return AwsError.InvalidParameter($"Please provide only one source for {what}: either ZipFile, or S3Bucket and S3Key.");
        }
        if (!hasZip && (s3Bucket is null || s3Key is null))
        {
            return AwsError.InvalidParameter($"Please provide a source for {what}: ZipFile, or S3Bucket and S3Key.");
        }
        return null;
    }

    /// <summary>The settings CreateFunction and UpdateFunctionConfiguration share; null means "not given".</summary>
    private static AwsError? ApplySettings(ref FunctionConfig config, FunctionSettingsRequest s, List<string>? architectures)
    {
        if (s.Runtime is not null)
        {
            if (ValidateRuntime(s.Runtime) is { } error)
            {
                return error;
            }
            config = config with { Runtime = s.Runtime };
        }
        if (s.Role is not null)
        {
            if (!RolePattern().IsMatch(s.Role))
            {
                return Pattern(s.Role, "role", RolePatternText);
            }
            config = config with { Role = s.Role };
        }
        if (s.Handler is not null)
        {
            if (s.Handler.Length > MaxHandlerLength)
            {
                return MaxLength(s.Handler, "handler", MaxHandlerLength);
            }
            if (!HandlerPattern().IsMatch(s.Handler))
            {
                return Pattern(s.Handler, "handler", @"[^\s]+");
            }
            config = config with { Handler = s.Handler };
        }
        if (s.Description is not null)
        {
            if (s.Description.Length > MaxDescriptionLength)
            {
                return MaxLength(s.Description, "description", MaxDescriptionLength);
            }
            config = config with { Description = s.Description };
        }
        if (s.Timeout is { } timeout)
        {
            if (timeout < 1)
            {
                return AwsError.InvalidParameter($"1 validation error detected: Value '{timeout}' at 'timeout' failed to satisfy constraint: Member must have value greater than or equal to 1");
            }
            if (timeout > MaxTimeout)
            {
                return AwsError.InvalidParameter($"1 validation error detected: Value '{timeout}' at 'timeout' failed to satisfy constraint: Member must have value less than or equal to {MaxTimeout}");
            }
            config = config with { Timeout = timeout };
        }
        if (s.MemorySize is { } memory)
        {
            if (memory < MinMemorySize)
            {
                return AwsError.InvalidParameter($"1 validation error detected: Value '{memory}' at 'memorySize' failed to satisfy constraint: Member must have value greater than or equal to {MinMemorySize}");
            }
            if (memory > MaxMemorySize)
            {
                return AwsError.InvalidParameter($"'MemorySize' value failed to satisfy constraint: Member must have value less than or equal to {MaxMemorySize}");
            }
            config = config with { MemorySize = memory };
        }
        if (s.EphemeralStorage is not null)
        {
            if (s.EphemeralStorage.Size is not { } size)
            {
                return NotNull("ephemeralStorage.size");
            }
            if (size is < MinEphemeralStorage or > MaxEphemeralStorage)
            {
                return AwsError.InvalidParameter(size < MinEphemeralStorage
                    ? $"1 validation error detected: Value '{size}' at 'ephemeralStorage.size' failed to satisfy constraint: Member must have value greater than or equal to {MinEphemeralStorage}"
                    : $"1 validation error detected: Value '{size}' at 'ephemeralStorage.size' failed to satisfy constraint: Member must have value less than or equal to {MaxEphemeralStorage}");
            }
            config = config with { EphemeralStorageSize = size };
        }
        if (architectures is not null)
        {
            if (ValidateArchitectures(architectures, out var architecture) is { } error)
            {
                return error;
            }
            config = config with { Architecture = architecture! };
        }
        if (s.Environment is not null)
        {
            // Environment given: its Variables replace the whole map (absent Variables clears it).
            var variables = new Dictionary<string, string>(StringComparer.Ordinal);
            if (s.Environment.Variables is not null && ValidateEnvironment(s.Environment.Variables, out variables) is { } error)
            {
                return error;
            }
            config = config with { EnvironmentVariables = variables };
        }
        if (s.DeadLetterConfig is not null)
        {
            var target = s.DeadLetterConfig.TargetArn;
            if (target is not null && !DeadLetterPattern().IsMatch(target))
            {
                return Pattern(target, "deadLetterConfig.targetArn", DeadLetterPatternText);
            }
            config = config with { DeadLetterTargetArn = string.IsNullOrEmpty(target) ? null : target };
        }
        if (s.TracingConfig?.Mode is { } mode)
        {
            if (mode is not ("Active" or "PassThrough"))
            {
                return Enum(mode, "tracingConfig.mode", "Active, PassThrough");
            }
            config = config with { TracingMode = mode };
        }
        if (s.DurableConfig is { } durable)
        {
            if (durable.ExecutionTimeout is < 1 or > 31_622_400)
            {
                return AwsError.InvalidParameter($"1 validation error detected: Value '{durable.ExecutionTimeout}' at 'durableConfig.executionTimeout' failed to satisfy constraint: Member must have value less than or equal to 31622400 and greater than or equal to 1");
            }
            if (durable.RetentionPeriodInDays is < 1 or > 90)
            {
                return AwsError.InvalidParameter($"1 validation error detected: Value '{durable.RetentionPeriodInDays}' at 'durableConfig.retentionPeriodInDays' failed to satisfy constraint: Member must have value less than or equal to 90 and greater than or equal to 1");
            }
            config = config with
            {
                Durable = new DurableSettings(durable.ExecutionTimeout ?? config.Durable?.ExecutionTimeout ?? DurableSettings.DefaultExecutionTimeout,
                    durable.RetentionPeriodInDays ?? config.Durable?.RetentionPeriodInDays ?? DurableSettings.DefaultRetentionPeriodInDays),
            };
        }
        if (s.LoggingConfig is not null)
        {
            if (ApplyLogging(ref config, s.LoggingConfig) is { } error)
            {
                return error;
            }
        }
        if (s.FileSystemConfigs is { Count: > 0 })
        {
            return AwsError.InvalidParameter("FileSystemConfigs (EFS) are not supported by Lamina; remove FileSystemConfigs from the request.");
        }
        if (s.VpcConfig is not null && ((s.VpcConfig.SubnetIds?.Count ?? 0) > 0 || (s.VpcConfig.SecurityGroupIds?.Count ?? 0) > 0))
        {
            return AwsError.InvalidParameter("VpcConfig is not supported by Lamina; functions use the network policy of the server. Remove SubnetIds and SecurityGroupIds.");
        }
        if (s.SnapStart?.ApplyOn is { } applyOn)
        {
            if (applyOn is not ("None" or "PublishedVersions"))
            {
                return Enum(applyOn, "snapStart.applyOn", "PublishedVersions, None");
            }
            if (applyOn == "PublishedVersions")
            {
                return AwsError.InvalidParameter("SnapStart is not supported by Lamina; set SnapStart.ApplyOn to None.");
            }
        }
        return null;
    }

    private static AwsError? ApplyLogging(ref FunctionConfig config, LoggingConfigDto logging)
    {
        var format = logging.LogFormat ?? config.LogFormat;
        if (format is not ("JSON" or "Text"))
        {
            return Enum(format, "loggingConfig.logFormat", "JSON, Text");
        }
        if (logging.ApplicationLogLevel is { } app && app is not ("TRACE" or "DEBUG" or "INFO" or "WARN" or "ERROR" or "FATAL"))
        {
            return Enum(app, "loggingConfig.applicationLogLevel", "TRACE, DEBUG, INFO, WARN, ERROR, FATAL");
        }
        if (logging.SystemLogLevel is { } system && system is not ("DEBUG" or "INFO" or "WARN"))
        {
            return Enum(system, "loggingConfig.systemLogLevel", "DEBUG, INFO, WARN");
        }
        if (logging.LogGroup is { } group && (group.Length is 0 or > 512 || !LogGroupPattern().IsMatch(group)))
        {
            return Pattern(group, "loggingConfig.logGroup", LogGroupPatternText);
        }

        var applicationLevel = logging.ApplicationLogLevel ?? config.ApplicationLogLevel;
        var systemLevel = logging.SystemLogLevel ?? config.SystemLogLevel;
        if (format == "Text")
        {
            if (logging.ApplicationLogLevel is not null || logging.SystemLogLevel is not null)
            {
                return AwsError.InvalidParameter("LogLevel is not supported when LogFormat is set to \"Text\". Remove LogLevel from your request or change the LogFormat to \"JSON\" and try again.");
            }
            applicationLevel = null;
            systemLevel = null;
        }
        else
        {
            // Lambda's defaults once JSON is chosen.
            applicationLevel ??= "INFO";
            systemLevel ??= "INFO";
        }
        config = config with
        {
            LogFormat = format,
            ApplicationLogLevel = applicationLevel,
            SystemLogLevel = systemLevel,
            LogGroup = logging.LogGroup ?? config.LogGroup,
        };
        return null;
    }

    internal static AwsError NotNull(string member) =>
        AwsError.InvalidParameter($"1 validation error detected: Value null at '{member}' failed to satisfy constraint: Member must not be null");

    internal static AwsError Pattern(string value, string member, string pattern) =>
        AwsError.InvalidParameter($"1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: Member must satisfy regular expression pattern: {pattern}");

    internal static AwsError MaxLength(string value, string member, int max) =>
        AwsError.InvalidParameter($"1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: Member must have length less than or equal to {max}");

    internal static AwsError Enum(string value, string member, string values) =>
        AwsError.InvalidParameter($"1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: Member must satisfy enum value set: [{values}]");
}
