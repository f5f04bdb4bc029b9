using System.Collections.Immutable;
using System.Text;
using System.Text.RegularExpressions;
using Lamina.Server.Diagnostics;
using Lamina.Server.Hosting;
using Lamina.Server.Protocols;
using Microsoft.Extensions.Options;

namespace Lamina.Server.Lambda;

/// <summary>
/// AddPermission, GetPolicy and RemovePermission (LAMBDA.md §4, "Permissions"): the resource-based policy of each
/// qualifier, which decides who outside the function's account may invoke it (and, with issue #10, function URLs and
/// triggers). Stored per qualifier in <see cref="FunctionEntry.Policies"/>; every change gives the policy a new
/// RevisionId, which Add/RemovePermission take as a precondition.
/// </summary>
internal static partial class PermissionsApi
{
    private const string StatementIdPattern = "([a-zA-Z0-9-_]+)";
    private const string ActionPatternText = "(lambda:[*]|lambda:[a-zA-Z]+|[*])";
    private const string SourceArnPatternText = @"arn:(aws[a-zA-Z0-9-]*):([a-zA-Z0-9\-])+:([a-z]{2}(-gov)?-[a-z]+-\d{1})?:(\d{12})?:(.*)";

    [GeneratedRegex(@"^[a-zA-Z0-9-_]+\z", RegexOptions.CultureInvariant)]
    private static partial Regex StatementId();

    // RemovePermission's path member is a NamespacedStatementId: dots are allowed too.
    [GeneratedRegex(@"^[a-zA-Z0-9-_.]+\z", RegexOptions.CultureInvariant)]
    private static partial Regex NamespacedStatementId();

    [GeneratedRegex(@"^(?:lambda:\*|lambda:[a-zA-Z]+|\*)\z", RegexOptions.CultureInvariant)]
    private static partial Regex ActionPattern();

    [GeneratedRegex(@"^\S+\z", RegexOptions.CultureInvariant)]
    private static partial Regex PrincipalPattern();

    [GeneratedRegex(@"^arn:aws[a-zA-Z0-9-]*:[a-zA-Z0-9\-]+:(?:[a-z]{2}(?:-gov)?-[a-z]+-\d)?:(?:\d{12})?:.*\z", RegexOptions.CultureInvariant | RegexOptions.Singleline)]
    private static partial Regex SourceArnPattern();

    [GeneratedRegex(@"^\d{12}\z", RegexOptions.CultureInvariant)]
    private static partial Regex AccountPattern();

    [GeneratedRegex(@"^[a-zA-Z0-9._\-]+\z", RegexOptions.CultureInvariant)]
    private static partial Regex EventSourceTokenPattern();

    [GeneratedRegex(@"^o-[a-z0-9]{10,32}\z", RegexOptions.CultureInvariant)]
    private static partial Regex OrgIdPattern();

    public static IEndpointRouteBuilder MapPermissionsApi(this IEndpointRouteBuilder endpoints)
    {
        endpoints.MapPost("/2015-03-31/functions/{name}/policy", AddAsync);
        endpoints.MapGet("/2015-03-31/functions/{name}/policy", Get);
        endpoints.MapDelete("/2015-03-31/functions/{name}/policy/{statementId}", RemoveAsync);
        return endpoints;
    }

    internal static async Task<IResult> AddAsync(HttpContext context, string name, FunctionRegistry registry, IOptions<LaminaOptions> options, ILoggerFactory loggers)
    {
        var limits = options.Value;
        if (!FunctionReference.TryParse(name, FunctionsApi.QueryValue(context, "Qualifier"), limits, Protocols.CallerIdentity.AccountOf(context, limits), out var reference, out var nameError))
        {
            return nameError!;
        }
        var (request, parseError) = await FunctionsApi.ReadJsonAsync(context.Request, FunctionsApi.MaxConfigurationRequestBytes, "AddPermission",
            LaminaJsonContext.Default.AddPermissionRequest, context.RequestAborted);
        if (parseError is not null)
        {
            return parseError;
        }
        if (Validate(request) is { } invalid)
        {
            return invalid;
        }
        if (reference.Qualifier == FunctionEntry.Latest)
        {
            return AwsError.InvalidParameter("We currently do not support adding policies for $LATEST.");
        }
        var qualifier = reference.Qualifier ?? FunctionEntry.Latest;
        PolicyStatement? added = null;
        var (status, _, error) = await registry.SetPolicyAsync<AwsError>(reference.Name, qualifier, entry =>
        {
            if (QualifierMissing(entry, reference.Qualifier, limits) is { } missing)
            {
                return (default, missing);
            }
            var current = entry.Policies.GetValueOrDefault(qualifier);
            if (request.RevisionId is not null && request.RevisionId != current?.RevisionId)
            {
                return (default, RevisionMismatch());
            }
            var statements = current?.Statements ?? [];
            if (statements.Any(s => s.Sid == request.StatementId))
            {
                return (default, AwsError.Conflict(
                    $"The statement id ({request.StatementId}) provided already exists. Please provide a new statement id, or remove the existing statement."));
            }
            added = new PolicyStatement
            {
                Sid = request.StatementId!,
                Action = request.Action!,
                Principal = request.Principal!,
                Resource = reference.Qualifier is null ? limits.FunctionArn(entry.Name) : $"{limits.FunctionArn(entry.Name)}:{reference.Qualifier}",
                SourceArn = request.SourceArn,
                SourceAccount = request.SourceAccount,
                PrincipalOrgId = request.PrincipalOrgID,
                EventSourceToken = request.EventSourceToken,
                FunctionUrlAuthType = request.FunctionUrlAuthType,
                InvokedViaFunctionUrl = request.InvokedViaFunctionUrl,
            };
            var next = statements.Add(added);
            var length = Encoding.UTF8.GetByteCount(new ResourcePolicy(qualifier, "", next).ToJson());
            if (length > ResourcePolicy.MaxLength)
            {
                return (default, new AwsError(400, "PolicyLengthExceededException",
                    $"The final policy size ({length}) is bigger than the limit ({ResourcePolicy.MaxLength})."));
            }
            return (next, null);
        }, context.RequestAborted);
        if (status == FunctionWriteStatus.NotFound)
        {
            return AwsError.FunctionNotFound(limits.FunctionArn(reference.Name));
        }
        if (error is not null)
        {
            return error;
        }
        Log.Changed(Logger(loggers), reference.Name, qualifier, "AddPermission", added!.Sid);
        return FunctionsApi.Json(new AddPermissionResponse { Statement = added.ToJson() }, LaminaJsonContext.Default.AddPermissionResponse,
            StatusCodes.Status201Created);
    }

    internal static IResult Get(HttpContext context, string name, FunctionRegistry registry, IOptions<LaminaOptions> options)
    {
        var limits = options.Value;
        if (!FunctionReference.TryParse(name, FunctionsApi.QueryValue(context, "Qualifier"), limits, Protocols.CallerIdentity.AccountOf(context, limits), out var reference, out var nameError))
        {
            return nameError!;
        }
        if (!registry.TryGetEntry(reference.Name, out var entry))
        {
            return AwsError.FunctionNotFound(limits.FunctionArn(reference.Name));
        }
        if (QualifierMissing(entry, reference.Qualifier, limits) is { } missing)
        {
            return missing;
        }
        if (!entry.Policies.TryGetValue(reference.Qualifier ?? FunctionEntry.Latest, out var policy))
        {
            return AwsError.NotFound("The resource you requested does not exist.");
        }
        return FunctionsApi.Json(new GetPolicyResponse { Policy = policy.ToJson(), RevisionId = policy.RevisionId }, LaminaJsonContext.Default.GetPolicyResponse);
    }

    internal static async Task<IResult> RemoveAsync(HttpContext context, string name, string statementId, FunctionRegistry registry,
        IOptions<LaminaOptions> options, ILoggerFactory loggers)
    {
        var limits = options.Value;
        if (!FunctionReference.TryParse(name, FunctionsApi.QueryValue(context, "Qualifier"), limits, Protocols.CallerIdentity.AccountOf(context, limits), out var reference, out var nameError))
        {
            return nameError!;
        }
        if (statementId.Length > 100 || !NamespacedStatementId().IsMatch(statementId))
        {
            return AwsError.Validation($"1 validation error detected: Value '{statementId}' at 'statementId' failed to satisfy constraint: Member must satisfy regular expression pattern: ([a-zA-Z0-9-_.]+)");
        }
        var revisionId = FunctionsApi.QueryValue(context, "RevisionId");
        var qualifier = reference.Qualifier ?? FunctionEntry.Latest;
        var (status, _, error) = await registry.SetPolicyAsync<AwsError>(reference.Name, qualifier, entry =>
        {
            if (QualifierMissing(entry, reference.Qualifier, limits) is { } missing)
            {
                return (default, missing);
            }
            if (!entry.Policies.TryGetValue(qualifier, out var current))
            {
                return (default, AwsError.NotFound("No policy is associated with the given resource."));
            }
            var statement = current.Statements.FirstOrDefault(s => s.Sid == statementId);
            if (statement is null)
            {
                return (default, AwsError.NotFound($"Statement {statementId} is not found in resource policy."));
            }
            if (!string.IsNullOrEmpty(revisionId) && revisionId != current.RevisionId)
            {
                return (default, RevisionMismatch());
            }
            return (current.Statements.Remove(statement), null);
        }, context.RequestAborted);
        if (status == FunctionWriteStatus.NotFound)
        {
            return AwsError.NotFound($"No policy found for: {limits.FunctionArn(reference.Name)}");
        }
        if (error is not null)
        {
            return error;
        }
        Log.Changed(Logger(loggers), reference.Name, qualifier, "RemovePermission", statementId);
        return TypedResults.NoContent();
    }

    /// <summary>Whether <paramref name="action"/> through <paramref name="qualifier"/> is allowed to <paramref name="caller"/> by the policy of that qualifier.</summary>
    public static bool Allows(FunctionEntry entry, string? qualifier, string action, PolicyCaller caller) =>
        entry.Policies.TryGetValue(qualifier ?? FunctionEntry.Latest, out var policy) && policy.Allows(action, caller);

    /// <summary>The model's constraints on the members, all reported at once as Lambda's ValidationException does.</summary>
    private static AwsError? Validate(AddPermissionRequest request)
    {
        var errors = new List<string>();
        Check(request.StatementId, "statementId", required: true, maxLength: 100, StatementId(), StatementIdPattern, errors);
        Check(request.Action, "action", required: true, maxLength: null, ActionPattern(), ActionPatternText, errors);
        Check(request.Principal, "principal", required: true, maxLength: null, PrincipalPattern(), @"[^\s]+", errors);
        Check(request.SourceArn, "sourceArn", required: false, maxLength: null, SourceArnPattern(), SourceArnPatternText, errors);
        Check(request.SourceAccount, "sourceAccount", required: false, maxLength: 12, AccountPattern(), @"\d{12}", errors);
        Check(request.EventSourceToken, "eventSourceToken", required: false, maxLength: 256, EventSourceTokenPattern(), @"[a-zA-Z0-9._\-]+", errors);
        Check(request.PrincipalOrgID, "principalOrgID", required: false, maxLength: 34, OrgIdPattern(), "o-[a-z0-9]{10,32}", errors);
        if (request.FunctionUrlAuthType is not null and not ("NONE" or "AWS_IAM"))
        {
            errors.Add($"Value '{request.FunctionUrlAuthType}' at 'functionUrlAuthType' failed to satisfy constraint: Member must satisfy enum value set: [NONE, AWS_IAM]");
        }
        return errors.Count == 0
            ? null
            : AwsError.Validation($"{errors.Count} validation error{(errors.Count > 1 ? "s" : "")} detected: {string.Join("; ", errors)}");

        static void Check(string? value, string member, bool required, int? maxLength, Regex pattern, string patternText, List<string> errors)
        {
            if (value is null)
            {
                if (required)
                {
                    errors.Add($"Value null at '{member}' failed to satisfy constraint: Member must not be null");
                }
                return;
            }
            if (maxLength is { } max && value.Length > max)
            {
                errors.Add($"Value '{value}' at '{member}' failed to satisfy constraint: Member must have length less than or equal to {max}");
            }
            else if (!pattern.IsMatch(value))
            {
                errors.Add($"Value '{value}' at '{member}' failed to satisfy constraint: Member must satisfy regular expression pattern: {patternText}");
            }
        }
    }

    /// <summary>A version or alias that does not exist: Lambda's 404 for each.</summary>
    private static AwsError? QualifierMissing(FunctionEntry entry, string? qualifier, LaminaOptions limits)
    {
        if (qualifier is null || entry.ResolvePrimary(qualifier) is not null)
        {
            return null;
        }
        var arn = $"{limits.FunctionArn(entry.Name)}:{qualifier}";
        return entry.Aliases.ContainsKey(qualifier) || int.TryParse(qualifier, out _) || qualifier == FunctionEntry.Latest
            ? AwsError.FunctionNotFound(arn)
            : AwsError.NotFound($"Cannot find alias arn: {arn}");
    }

    private static AwsError RevisionMismatch() => AwsError.PreconditionFailed(
        "The Revision Id provided does not match the latest Revision Id. Call the GetPolicy API to retrieve the latest Revision Id");

    private static ILogger Logger(ILoggerFactory loggers) => loggers.CreateLogger(typeof(PermissionsApi).FullName!);

    private static partial class Log
    {
        [LoggerMessage(EventIds.PolicyChanged, LogLevel.Information, "Resource policy of {Name}:{Qualifier} changed ({Operation} {StatementId})")]
        public static partial void Changed(ILogger logger, string name, string qualifier, string operation, string statementId);
    }
}
