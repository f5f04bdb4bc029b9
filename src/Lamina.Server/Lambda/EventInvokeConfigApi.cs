using System.Globalization;
using System.Text.RegularExpressions;
using Lamina.Server.Diagnostics;
using Lamina.Server.Hosting;
using Lamina.Server.Protocols;
using Microsoft.Extensions.Options;

namespace Lamina.Server.Lambda;

/// <summary>
/// Put/Update/Get/Delete/ListFunctionEventInvokeConfigs (LAMBDA.md §1, "Async invoke config"): per qualifier
/// (<c>$LATEST</c> when none is named, a version or an alias) the retries and the maximum age of asynchronous
/// invocations and their destinations. The registry stores them in <see cref="FunctionEntry.EventInvokeConfigs"/>,
/// where the asynchronous queue reads them. Destinations: Lambda functions and Lamina's SQS queues and SNS topics; event
/// buses and buckets are refused.
/// </summary>
internal static partial class EventInvokeConfigApi
{
    public const int MinRetryAttempts = 0;
    public const int MaxRetryAttempts = 2;
    public const int MinEventAgeSeconds = 60;
    public const int MaxEventAgeSeconds = 21_600;
    private const int MaxDestinationLength = 350;

    // The model's DestinationArn pattern (full match), as Lambda quotes it in its validation message.
    private const string DestinationPatternText =
        @"$|kafka://([^.]([a-zA-Z0-9\-_.]{0,248}))|arn:(aws[a-zA-Z0-9-]*):([a-zA-Z0-9\-])+:([a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1})?:(\d{12})?:(.*)";

    [GeneratedRegex(@"^(?:kafka://[^.][a-zA-Z0-9\-_.]{0,248}|arn:aws[a-zA-Z0-9-]*:[a-zA-Z0-9\-]+:(?:[a-z]{2}(?:-gov|-iso[a-z]?)?-[a-z]+-\d)?:(?:\d{12})?:.*)\z", RegexOptions.CultureInvariant)]
    private static partial Regex DestinationPattern();

    // A function's ARN as a destination: full, with region and account, optionally qualified.
    [GeneratedRegex(@"^arn:aws[a-zA-Z-]*:lambda:(?<region>[a-z]{2}(?:-gov|-iso[a-z]?)?-[a-z]+-\d):(?<account>\d{12}):function:(?<name>[a-zA-Z0-9-_]{1,64})(?::(?<qualifier>\$LATEST|[a-zA-Z0-9-_]{1,128}))?\z", RegexOptions.CultureInvariant)]
    private static partial Regex FunctionDestinationPattern();

    public static IEndpointRouteBuilder MapEventInvokeConfigApi(this IEndpointRouteBuilder endpoints)
    {
        endpoints.MapPut("/2019-09-25/functions/{name}/event-invoke-config", PutAsync);
        endpoints.MapPost("/2019-09-25/functions/{name}/event-invoke-config", UpdateAsync);
        endpoints.MapGet("/2019-09-25/functions/{name}/event-invoke-config", Get);
        endpoints.MapDelete("/2019-09-25/functions/{name}/event-invoke-config", DeleteAsync);
        endpoints.MapGet("/2019-09-25/functions/{name}/event-invoke-config/list", List);
        return endpoints;
    }

    /// <summary>PutFunctionEventInvokeConfig: replaces the whole configuration; settings left out are cleared.</summary>
    internal static Task<IResult> PutAsync(HttpContext context, string name, FunctionRegistry registry, Sqs.QueueStore queues, IOptions<LaminaOptions> options,
        ILoggerFactory loggers) =>
        WriteAsync(context, name, registry, queues, options.Value, loggers, merge: false, "PutFunctionEventInvokeConfig");

    /// <summary>UpdateFunctionEventInvokeConfig: merges the settings given into the existing configuration (404 without one).</summary>
    internal static Task<IResult> UpdateAsync(HttpContext context, string name, FunctionRegistry registry, Sqs.QueueStore queues, IOptions<LaminaOptions> options,
        ILoggerFactory loggers) =>
        WriteAsync(context, name, registry, queues, options.Value, loggers, merge: true, "UpdateFunctionEventInvokeConfig");

    private static async Task<IResult> WriteAsync(HttpContext context, string name, FunctionRegistry registry, Sqs.QueueStore queues, LaminaOptions limits, ILoggerFactory loggers,
        bool merge, string operation)
    {
        // In Lambda's order: the request's shape (ValidationException), at least one setting, then the function, the
        // qualifier and what the destinations name.
        if (!FunctionReference.TryParse(name, FunctionsApi.QueryValue(context, "Qualifier"), limits, Protocols.CallerIdentity.AccountOf(context, limits), out var reference, out var nameError))
        {
            return nameError!;
        }
        var qualifier = reference.Qualifier ?? FunctionEntry.Latest;
        var (request, parseError) = await FunctionsApi.ReadJsonAsync(context.Request, FunctionsApi.MaxConfigurationRequestBytes, operation,
            LaminaJsonContext.Default.EventInvokeConfigRequest, context.RequestAborted);
        if (parseError is not null)
        {
            return parseError;
        }
        if (Validate(request) is { } invalid)
        {
            return invalid;
        }
        var onSuccess = request.DestinationConfig?.OnSuccess;
        var onFailure = request.DestinationConfig?.OnFailure;
        if (request.MaximumRetryAttempts is null && request.MaximumEventAgeInSeconds is null && onSuccess is null && onFailure is null)
        {
            return AwsError.InvalidParameter("You must specify at least one of error handling or destination setting.");
        }

        var (status, config, error) = await registry.SetEventInvokeConfigAsync<AwsError>(reference.Name, qualifier, entry =>
        {
            if (entry.ResolvePrimary(qualifier) is null)
            {
                return (null, FunctionMissing());
            }
            var current = entry.EventInvokeConfigs.GetValueOrDefault(qualifier);
            if (merge && current is null)
            {
                return (null, NoConfig(limits, entry.Name, qualifier));
            }
            if (CheckDestinations(entry, request.DestinationConfig, registry, queues, limits, context) is { } badDestination)
            {
                return (null, badDestination);
            }
            // A destination member with a Destination sets it ("" clears it); Put starts from nothing, Update from the
            // current settings.
            var next = merge ? current! : new EventInvokeConfig(qualifier, null, null, null, null, default);
            return (next with
            {
                MaximumRetryAttempts = request.MaximumRetryAttempts ?? next.MaximumRetryAttempts,
                MaximumEventAgeInSeconds = request.MaximumEventAgeInSeconds ?? next.MaximumEventAgeInSeconds,
                OnSuccessDestination = onSuccess?.Destination is { } success ? NullIfEmpty(success) : next.OnSuccessDestination,
                OnFailureDestination = onFailure?.Destination is { } failure ? NullIfEmpty(failure) : next.OnFailureDestination,
            }, null);
        }, context.RequestAborted);
        if (status == FunctionWriteStatus.NotFound)
        {
            return FunctionMissing();
        }
        if (error is not null)
        {
            return error;
        }
        Log.Changed(Logger(loggers), reference.Name, qualifier, operation);
        return FunctionsApi.Json(ToDto(config!, limits, reference.Name), LaminaJsonContext.Default.FunctionEventInvokeConfigDto);
    }

    internal static IResult Get(HttpContext context, string name, FunctionRegistry registry, IOptions<LaminaOptions> options)
    {
        var limits = options.Value;
        if (!FunctionReference.TryParse(name, FunctionsApi.QueryValue(context, "Qualifier"), limits, Protocols.CallerIdentity.AccountOf(context, limits), out var reference, out var nameError))
        {
            return nameError!;
        }
        var qualifier = reference.Qualifier ?? FunctionEntry.Latest;
        // A missing function, version or alias has no configuration either; Lambda answers the same 404 for all three.
        if (!registry.TryGetEntry(reference.Name, out var entry) || !entry.EventInvokeConfigs.TryGetValue(qualifier, out var config))
        {
            return NoConfig(limits, reference.Name, qualifier);
        }
        return FunctionsApi.Json(ToDto(config, limits, entry.Name), LaminaJsonContext.Default.FunctionEventInvokeConfigDto);
    }

    internal static async Task<IResult> DeleteAsync(HttpContext context, string name, FunctionRegistry registry, IOptions<LaminaOptions> options, ILoggerFactory loggers)
    {
        var limits = options.Value;
        if (!FunctionReference.TryParse(name, FunctionsApi.QueryValue(context, "Qualifier"), limits, Protocols.CallerIdentity.AccountOf(context, limits), out var reference, out var nameError))
        {
            return nameError!;
        }
        var qualifier = reference.Qualifier ?? FunctionEntry.Latest;
        var (status, _, error) = await registry.SetEventInvokeConfigAsync<AwsError>(reference.Name, qualifier,
            entry => (null, entry.EventInvokeConfigs.ContainsKey(qualifier) ? null : NoConfig(limits, entry.Name, qualifier)),
            context.RequestAborted);
        if (status == FunctionWriteStatus.NotFound)
        {
            return NoConfig(limits, reference.Name, qualifier);
        }
        if (error is not null)
        {
            return error;
        }
        Log.Changed(Logger(loggers), reference.Name, qualifier, "DeleteFunctionEventInvokeConfig");
        return TypedResults.NoContent();
    }

    internal static IResult List(HttpContext context, string name, FunctionRegistry registry, IOptions<LaminaOptions> options)
    {
        var limits = options.Value;
        var (entry, page, next, error) = FunctionsApi.ListPerQualifier(context, name, registry, limits, static e => e.EventInvokeConfigs, static _ => FunctionMissing());
        if (error is not null)
        {
            return error;
        }
        var response = new ListFunctionEventInvokeConfigsResponse { NextMarker = next };
        response.FunctionEventInvokeConfigs.AddRange(page.ConvertAll(c => ToDto(c, limits, entry!.Name)));
        return FunctionsApi.Json(response, LaminaJsonContext.Default.ListFunctionEventInvokeConfigsResponse);
    }

    /// <summary>The model's constraints on the members, all reported at once as Lambda's ValidationException does.</summary>
    private static AwsError? Validate(EventInvokeConfigRequest request)
    {
        var errors = new List<string>();
        Range(request.MaximumRetryAttempts, "maximumRetryAttempts", MinRetryAttempts, MaxRetryAttempts, errors);
        Range(request.MaximumEventAgeInSeconds, "maximumEventAgeInSeconds", MinEventAgeSeconds, MaxEventAgeSeconds, errors);
        Destination(request.DestinationConfig?.OnSuccess?.Destination, "destinationConfig.onSuccess.destination", errors);
        Destination(request.DestinationConfig?.OnFailure?.Destination, "destinationConfig.onFailure.destination", errors);
        return errors.Count == 0
            ? null
            : AwsError.Validation($"{errors.Count} validation error{(errors.Count > 1 ? "s" : "")} detected: {string.Join("; ", errors)}");

        static void Range(int? value, string member, int min, int max, List<string> errors)
        {
            if (value < min)
            {
                errors.Add(string.Create(CultureInfo.InvariantCulture,
                    $"Value '{value}' at '{member}' failed to satisfy constraint: Member must have value greater than or equal to {min}"));
            }
            else if (value > max)
            {
                errors.Add(string.Create(CultureInfo.InvariantCulture,
                    $"Value '{value}' at '{member}' failed to satisfy constraint: Member must have value less than or equal to {max}"));
            }
        }

        static void Destination(string? value, string member, List<string> errors)
        {
            if (value is null || value.Length == 0)
            {
                return;
            }
            if (value.Length > MaxDestinationLength)
            {
                errors.Add($"Value '{value}' at '{member}' failed to satisfy constraint: Member must have length less than or equal to {MaxDestinationLength}");
            }
            else if (!DestinationPattern().IsMatch(value))
            {
                errors.Add($"Value '{value}' at '{member}' failed to satisfy constraint: Member must satisfy regular expression pattern: {DestinationPatternText}");
            }
        }
    }

    /// <summary>What the destinations name, checked under the registry's write lock. Null when they may be written.</summary>
    private static AwsError? CheckDestinations(FunctionEntry entry, DestinationConfigDto? destinations, FunctionRegistry registry, Sqs.QueueStore queues,
        LaminaOptions limits, HttpContext? context)
    {
        var onSuccess = NullIfEmpty(destinations?.OnSuccess?.Destination);
        var onFailure = NullIfEmpty(destinations?.OnFailure?.Destination);
        foreach (var (arn, isOnSuccess) in new[] { (onSuccess, true), (onFailure, false) })
        {
            if (arn is null)
            {
                continue;
            }
            var service = arn.StartsWith("arn:", StringComparison.Ordinal) ? arn.Split(':')[2] : "";
            switch (service)
            {
                case "lambda":
                    if (CheckFunctionDestination(entry, arn, registry, limits) is { } badFunction)
                    {
                        return badFunction;
                    }
                    break;
                case "sqs":
                    // A standard queue of this server, region and account (Lambda refuses FIFO queues as destinations).
                    var parts = arn.Split(':');
                    if (parts.Length != 6 || parts[3] != limits.Region || parts[4] != (entry.LatestConfig.ForeignAccount ?? limits.AccountId)
                        || !queues.TryGet(parts[5], out var queue) || queue.Fifo)
                    {
                        return InvalidDestination(arn);
                    }
                    break;
                case "sns":
                    if (!(context?.RequestServices?.GetService<Sns.TopicStore>() is { } topics && topics.TryGetByArn(arn, out _)))
                    {
                        return InvalidDestination(arn);
                    }
                    break;
                case "events":
                case "s3" when !isOnSuccess:
                    // Valid in Lambda; the asynchronous queue cannot deliver there yet.
                    return AwsError.InvalidParameter(
                        $"The destination {arn} is {Describe(service)}, which Lamina cannot deliver to yet. Use a Lambda function, a Lamina SQS queue or a Lamina SNS topic as the destination.");
                default:
                    // Kafka (event source mappings only), S3 on success, and services that are no destination at all.
                    var success = onSuccess is null ? "null" : $"OnSuccess(destination={onSuccess})";
                    var failure = onFailure is null ? "null" : $"OnFailure(destination={onFailure})";
                    return AwsError.InvalidParameter($"The provided destination config DestinationConfig(onSuccess={success}, onFailure={failure}) is invalid.");
            }
        }
        return null;

        static string Describe(string service) => service switch
        {
            "sqs" => "an Amazon SQS queue",
            "sns" => "an Amazon SNS topic",
            "events" => "an Amazon EventBridge event bus",
            _ => "an Amazon S3 bucket",
        };
    }

    /// <summary>
    /// A function destination must name a function of this region and account that exists (the version or alias too,
    /// when qualified), and not the function itself: Lambda refuses a function as its own destination.
    /// </summary>
    private static AwsError? CheckFunctionDestination(FunctionEntry entry, string arn, FunctionRegistry registry, LaminaOptions limits)
    {
        // A destination is a function of the same account (accounts are tenants).
        var account = entry.LatestConfig.ForeignAccount ?? limits.AccountId;
        var match = FunctionDestinationPattern().Match(arn);
        if (!match.Success || match.Groups["region"].Value != limits.Region || match.Groups["account"].Value != account)
        {
            return InvalidDestination(arn);
        }
        var target = limits.FunctionKey(account, match.Groups["name"].Value);
        if (target == entry.Name)
        {
            return AwsError.InvalidParameter("You can't specify the function as a destination for itself.");
        }
        var targetQualifier = match.Groups["qualifier"].Success ? match.Groups["qualifier"].Value : null;
        if (!registry.TryGetEntry(target, out var other) || other.ResolvePrimary(targetQualifier) is null)
        {
            return InvalidDestination(arn);
        }
        return null;
    }

    private static FunctionEventInvokeConfigDto ToDto(EventInvokeConfig config, LaminaOptions limits, string function) => new()
    {
        // Epoch seconds with milliseconds, e.g. 1569284520.333: the decimal keeps the digits exact.
        LastModified = config.LastModified.ToUnixTimeMilliseconds() / 1000m,
        FunctionArn = $"{limits.FunctionArn(function)}:{config.Qualifier}",
        MaximumRetryAttempts = config.MaximumRetryAttempts,
        MaximumEventAgeInSeconds = config.MaximumEventAgeInSeconds,
        DestinationConfig = new DestinationConfigDto
        {
            OnSuccess = new DestinationDto { Destination = config.OnSuccessDestination },
            OnFailure = new DestinationDto { Destination = config.OnFailureDestination },
        },
    };

    private static string? NullIfEmpty(string? value) => string.IsNullOrEmpty(value) ? null : value;

    private static AwsError FunctionMissing() => AwsError.NotFound("The function doesn't exist.");

    private static AwsError NoConfig(LaminaOptions limits, string function, string qualifier) =>
        AwsError.NotFound($"The function {limits.FunctionArn(function)}:{qualifier} doesn't have an EventInvokeConfig");

    private static AwsError InvalidDestination(string arn) => AwsError.InvalidParameter($"The destination ARN {arn} is invalid.");

    private static ILogger Logger(ILoggerFactory loggers) => loggers.CreateLogger(typeof(EventInvokeConfigApi).FullName!);

    private static partial class Log
    {
        [LoggerMessage(EventIds.EventInvokeConfigChanged, LogLevel.Information, "Asynchronous invocation settings of {Name}:{Qualifier} changed ({Operation})")]
        public static partial void Changed(ILogger logger, string name, string qualifier, string operation);
    }
}
