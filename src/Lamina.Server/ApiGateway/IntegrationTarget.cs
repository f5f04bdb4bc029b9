using System.Text.RegularExpressions;

namespace Lamina.Server.ApiGateway;

/// <summary>
/// The function an integration or authorizer URI names: a function ARN
/// (<c>arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]</c>), or API Gateway's invocation URI around one
/// (<c>arn:aws:apigateway:REGION:lambda:path/2015-03-31/functions/FUNCTION_ARN/invocations</c>, what OpenAPI
/// definitions and SAM write). <c>${stageVariables.NAME}</c> in it takes the stage's value first.
/// </summary>
internal sealed partial record IntegrationTarget(string Account, string Name, string? Qualifier)
{
    [GeneratedRegex(@"^arn:aws[a-zA-Z-]*:lambda:[a-z0-9-]*:(?<account>\d{12}):function:(?<name>[a-zA-Z0-9_-]{1,64})(?::(?<qualifier>\$LATEST|[a-zA-Z0-9_-]{1,128}))?\z",
        RegexOptions.CultureInvariant)]
    private static partial Regex FunctionArnPattern();

    [GeneratedRegex(@"^arn:aws[a-zA-Z-]*:apigateway:[a-z0-9-]*:lambda:path/\d{4}-\d{2}-\d{2}/functions/(?<arn>.+)/invocations\z", RegexOptions.CultureInvariant)]
    private static partial Regex InvocationUriPattern();

    [GeneratedRegex(@"\$\{stageVariables\.(?<name>[a-zA-Z0-9_]+)\}", RegexOptions.CultureInvariant)]
    private static partial Regex StageVariablePattern();

    public static IntegrationTarget? Parse(string uri)
    {
        if (InvocationUriPattern().Match(uri) is { Success: true } invocation)
        {
            uri = invocation.Groups["arn"].Value;
        }
        if (FunctionArnPattern().Match(uri) is not { Success: true } arn)
        {
            return null;
        }
        var qualifier = arn.Groups["qualifier"];
        return new IntegrationTarget(arn.Groups["account"].Value, arn.Groups["name"].Value, qualifier.Success ? qualifier.Value : null);
    }

    /// <summary>Parses <paramref name="uri"/> after putting the stage's variables in it.</summary>
    public static IntegrationTarget? Resolve(string uri, IReadOnlyDictionary<string, string> stageVariables) =>
        Parse(uri.Contains("${stageVariables.", StringComparison.Ordinal)
            ? StageVariablePattern().Replace(uri, m => stageVariables.GetValueOrDefault(m.Groups["name"].Value, ""))
            : uri);
}
