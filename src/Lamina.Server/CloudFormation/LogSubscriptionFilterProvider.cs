using System.Text.Json.Nodes;

namespace Lamina.Server.CloudFormation;

/// <summary>
/// AWS::Logs::SubscriptionFilter over the CloudWatch Logs API (and SAM's CloudWatchLogs event, which makes one). Ref is
/// the filter's name; a new name or log group replaces it, any other change puts the filter again under its name.
/// </summary>
internal sealed class LogSubscriptionFilterProvider : ResourceProvider
{
    private const string Target = "Logs_20140328.";
    private const string ContentType = "application/x-amz-json-1.1";

    public override string Type => "AWS::Logs::SubscriptionFilter";

    public override string? NameProperty => "FilterName";

    public override IReadOnlySet<string> CreateOnlyProperties { get; } = Set("FilterName", "LogGroupName");

    public override string? PlannedPhysicalId(ProvisionRequest request) => request.String("FilterName") is null ? request.GeneratedName(512) : null;

    public override async Task<ProvisionResult> CreateAsync(ProvisionRequest request, CancellationToken cancellationToken)
    {
        var name = request.String("FilterName") ?? request.GeneratedName(512);
        await PutAsync(request, name, cancellationToken);
        return new ProvisionResult(name, []);
    }

    public override async Task<ProvisionResult> UpdateAsync(ProvisionRequest request, CancellationToken cancellationToken)
    {
        await PutAsync(request, request.PhysicalId!, cancellationToken);
        return new ProvisionResult(request.PhysicalId!, []);
    }

    public override Task DeleteAsync(ProvisionRequest request, CancellationToken cancellationToken) => IgnoreNotFoundAsync(() =>
        request.Client.JsonAsync("logs", Target + "DeleteSubscriptionFilter", ContentType,
            new JsonObject { ["logGroupName"] = request.String("LogGroupName"), ["filterName"] = request.PhysicalId }, cancellationToken));

    private static Task<JsonObject> PutAsync(ProvisionRequest request, string name, CancellationToken cancellationToken)
    {
        var body = new JsonObject
        {
            ["logGroupName"] = request.RequiredString("LogGroupName"),
            ["filterName"] = name,
            // Required, and may be empty (every event).
            ["filterPattern"] = request.String("FilterPattern") ?? throw new ServiceException("cloudformation", 400, "InvalidRequest", "Property FilterPattern cannot be empty."),
            ["destinationArn"] = request.RequiredString("DestinationArn"),
        };
        foreach (var (property, member) in new[] { ("RoleArn", "roleArn"), ("Distribution", "distribution") })
        {
            if (request.String(property) is { } value)
            {
                body[member] = value;
            }
        }
        if (request.Bool("ApplyOnTransformedLogs") is { } transformed)
        {
            body["applyOnTransformedLogs"] = transformed;
        }
        return request.Client.JsonAsync("logs", Target + "PutSubscriptionFilter", ContentType, body, cancellationToken);
    }
}
