using System.Text.RegularExpressions;
using Lamina.Server.Hosting;
using Lamina.Server.Protocols;
using Microsoft.Extensions.Options;

namespace Lamina.Server.Lambda;

/// <summary>
/// TagResource, UntagResource and ListTags on functions (LAMBDA.md §1.3). The resource is the function's unqualified
/// ARN, URL-encoded in the path; tags belong to the function, not to a version or alias, and Lambda refuses
/// qualified ARNs. Event source mappings and code signing configs are not in Lamina yet: their ARNs are not found.
/// </summary>
internal static partial class TagsApi
{
    private const string Tags = "/2017-03-31/tags/{resource}";

    private const string ResourcePatternText =
        @"arn:(aws[a-zA-Z-]*):lambda:[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:\d{12}:(function:[a-zA-Z0-9-_]+(:(\$LATEST|[a-zA-Z0-9-_]+))?|code-signing-config:csc-[a-z0-9]{17}|event-source-mapping:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|capacity-provider:[a-zA-Z0-9-_]+)";

    [GeneratedRegex(@"^arn:(aws[a-zA-Z-]*):lambda:(?<region>[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}):(?<account>\d{12}):(?:function:(?<name>[a-zA-Z0-9-_]+)(?::(?<qualifier>\$LATEST|[a-zA-Z0-9-_]+))?|code-signing-config:csc-[a-z0-9]{17}|event-source-mapping:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|capacity-provider:[a-zA-Z0-9-_]+)\z", RegexOptions.CultureInvariant)]
    private static partial Regex ResourcePattern();

    public static IEndpointRouteBuilder MapTagsApi(this IEndpointRouteBuilder endpoints)
    {
        endpoints.MapPost(Tags, TagResource);
        endpoints.MapDelete(Tags, UntagResource);
        endpoints.MapGet(Tags, ListTags);
        return endpoints;
    }

    internal static async Task<IResult> TagResource(HttpContext context, string resource, FunctionRegistry registry, IOptions<LaminaOptions> options)
    {
        var cancellationToken = context.RequestAborted;
        if (ParseResource(resource, registry, options.Value, Protocols.CallerIdentity.AccountOf(context, options.Value), out var name) is { } invalid)
        {
            return invalid;
        }
        var (request, parseError) = await FunctionsApi.ReadJsonAsync(context.Request, FunctionsApi.MaxConfigurationRequestBytes, "TagResource", LaminaJsonContext.Default.TagResourceRequest, cancellationToken);
        if (parseError is not null)
        {
            return parseError;
        }
        if (request.Tags is null)
        {
            return FunctionValidation.NotNull("tags");
        }
        if (request.Tags.Count == 0)
        {
            return AwsError.InvalidParameter("An error occurred and the request cannot be processed.");
        }
        if (FunctionValidation.ValidateTags(request.Tags) is { } tagsError)
        {
            return tagsError;
        }
        var tags = request.Tags.ToDictionary(static t => t.Key, static t => t.Value ?? "", StringComparer.Ordinal);
        return await registry.TagAsync(name!, tags, FunctionValidation.MaxTags, cancellationToken) switch
        {
            FunctionWriteStatus.Succeeded => TypedResults.NoContent(),
            FunctionWriteStatus.Refused => AwsError.InvalidParameter(
                $"Number of tags exceeds resource tag limit. A resource can have at most {FunctionValidation.MaxTags} tags."),
            _ => AwsError.FunctionNotFound(resource),
        };
    }

    internal static async Task<IResult> UntagResource(HttpContext context, string resource, FunctionRegistry registry, IOptions<LaminaOptions> options)
    {
        if (ParseResource(resource, registry, options.Value, Protocols.CallerIdentity.AccountOf(context, options.Value), out var name) is { } invalid)
        {
            return invalid;
        }
        if (!context.Request.Query.TryGetValue("tagKeys", out var keys) || keys.Count == 0)
        {
            return AwsError.Validation("1 validation error detected: Value null at 'tagKeys' failed to satisfy constraint: Member must not be null");
        }
        return await registry.UntagAsync(name!, keys.Select(static k => k ?? "").ToList(), context.RequestAborted) == FunctionWriteStatus.Succeeded
            ? TypedResults.NoContent()
            : AwsError.FunctionNotFound(resource);
    }

    internal static async Task<IResult> ListTags(HttpContext context, string resource, FunctionRegistry registry, IOptions<LaminaOptions> options)
    {
        if (ParseResource(resource, registry, options.Value, Protocols.CallerIdentity.AccountOf(context, options.Value), out var name) is { } invalid)
        {
            return invalid;
        }
        var tags = await registry.GetTagsAsync(name!, context.RequestAborted);
        return FunctionsApi.Json(new ListTagsResponse { Tags = tags }, FunctionsApi.Relaxed.ListTagsResponse);
    }

    /// <summary>The function an (unqualified) ARN names, or the error Lambda answers.</summary>
    private static AwsError? ParseResource(string resource, FunctionRegistry registry, LaminaOptions options, string account, out string? name)
    {
        name = null;
        var match = resource.Length is > 0 and <= 256 ? ResourcePattern().Match(resource) : Match.Empty;
        if (!match.Success)
        {
            return AwsError.Validation(
                $"1 validation error detected: Value '{resource}' at 'resource' failed to satisfy constraint: Member must satisfy regular expression pattern: {ResourcePatternText}");
        }
        if (!match.Groups["name"].Success)
        {
            // An event source mapping, code signing config or capacity provider: none exist in Lamina yet.
            return AwsError.NotFound("The resource you requested does not exist.");
        }
        if (match.Groups["qualifier"].Success)
        {
            return AwsError.InvalidParameter("Tags on function aliases and versions are not supported. Please specify a function ARN.");
        }
        var candidate = options.FunctionKey(account, match.Groups["name"].Value);
        if (match.Groups["account"].Value != account || match.Groups["region"].Value != options.Region ||
            match.Groups["name"].Value.Length > FunctionReference.MaxNameLength || !registry.TryGet(candidate, out _))
        {
            return AwsError.FunctionNotFound(resource);
        }
        name = candidate;
        return null;
    }
}
