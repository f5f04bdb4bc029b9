using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;

namespace Lamina.Server.CloudFormation;

/// <summary>
/// AWS::Scheduler::Schedule (what SAM makes of a ScheduleV2 event). Lamina has no EventBridge Scheduler API: a schedule
/// runs as a scheduled EventBridge rule on the default bus named <c>Scheduler_GROUP_NAME</c>, with its target, and —
/// for a function target — the resource-policy statement that lets that rule invoke it (Scheduler's role does that on
/// AWS). Recurring <c>rate()</c>/<c>cron()</c> schedules in UTC are supported; one-time <c>at()</c> schedules, other
/// time zones and start/end dates are refused rather than run at the wrong time.
/// </summary>
internal sealed class SchedulerScheduleProvider : ResourceProvider
{
    private const string ContentType = "application/x-amz-json-1.1";
    private const string TargetId = "ScheduleTarget";

    public override string Type => "AWS::Scheduler::Schedule";

    public override string? NameProperty => "Name";

    public override IReadOnlySet<string> CreateOnlyProperties { get; } = Set("Name", "GroupName");

    public override IReadOnlySet<string> AttributeNames { get; } = Set("Arn");

    public override string? PlannedPhysicalId(ProvisionRequest request) => request.String("Name") is null ? request.GeneratedName(64) : null;

    public override async Task<ProvisionResult> CreateAsync(ProvisionRequest request, CancellationToken cancellationToken)
    {
        Check(request);
        var name = request.String("Name") ?? request.GeneratedName(64);
        var rule = RuleName(Group(request), name);
        try
        {
            await request.Client.JsonAsync("events", "AWSEvents.DescribeRule", ContentType, new JsonObject { ["Name"] = rule }, cancellationToken);
            throw new ServiceException("scheduler", 409, "ResourceAlreadyExistsException", $"Schedule {name} already exists.");
        }
        catch (ServiceException e) when (e.NotFound)
        {
        }
        try
        {
            await ApplyAsync(request, rule, null, cancellationToken);
        }
        catch (ServiceException)
        {
            await RemoveAsync(request, rule, request.Properties, CancellationToken.None);
            throw;
        }
        return new ProvisionResult(name, Attributes(request, name));
    }

    public override async Task<ProvisionResult> UpdateAsync(ProvisionRequest request, CancellationToken cancellationToken)
    {
        Check(request);
        await ApplyAsync(request, RuleName(Group(request), request.PhysicalId!), request.PreviousProperties, cancellationToken);
        return new ProvisionResult(request.PhysicalId!, Attributes(request, request.PhysicalId!));
    }

    public override Task DeleteAsync(ProvisionRequest request, CancellationToken cancellationToken) =>
        RemoveAsync(request, RuleName(Group(request), request.PhysicalId!), request.Properties, cancellationToken);

    private static JsonObject Attributes(ProvisionRequest request, string name) =>
        new() { ["Arn"] = $"arn:aws:scheduler:{request.Region}:{request.AccountId}:schedule/{Group(request)}/{name}" };

    private static string Group(ProvisionRequest request) => request.String("GroupName") ?? "default";

    /// <summary>The rule's name: rule and schedule names share their alphabet; a long one ends in a hash of the whole.</summary>
    internal static string RuleName(string group, string name)
    {
        var full = $"Scheduler_{group}_{name}";
        return full.Length <= 64 ? full : full[..55] + "_" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(full)))[..8];
    }

    private static void Check(ProvisionRequest request)
    {
        var expression = request.RequiredString("ScheduleExpression");
        if (expression.StartsWith("at(", StringComparison.Ordinal))
        {
            throw Unsupported("one-time at() schedules are not supported yet; use rate() or cron()");
        }
        if (request.String("ScheduleExpressionTimezone") is { } zone && zone is not ("UTC" or "Etc/UTC" or "GMT" or "Etc/GMT"))
        {
            throw Unsupported($"schedules run in UTC; ScheduleExpressionTimezone {zone} is not supported yet");
        }
        if (request.String("StartDate") is not null || request.String("EndDate") is not null)
        {
            throw Unsupported("StartDate and EndDate are not supported yet");
        }
        if (request.Properties["Target"] is not JsonObject target || target["Arn"] is null)
        {
            throw new ServiceException("scheduler", 400, "ValidationException", "Property Target (with Arn and RoleArn) is required.");
        }
    }

    private static ServiceException Unsupported(string what) =>
        new("scheduler", 400, "ValidationException", $"Lamina runs schedules as EventBridge rules: {what}.");

    private static async Task ApplyAsync(ProvisionRequest request, string rule, JsonObject? previous, CancellationToken cancellationToken)
    {
        var target = (JsonObject)request.Properties["Target"]!;
        var answer = await request.Client.JsonAsync("events", "AWSEvents.PutRule", ContentType, new JsonObject
        {
            ["Name"] = rule,
            ["ScheduleExpression"] = request.RequiredString("ScheduleExpression"),
            ["State"] = request.String("State") ?? "ENABLED",
            ["Description"] = request.String("Description") ?? $"EventBridge Scheduler schedule {Group(request)}/{request.PhysicalId ?? request.String("Name")}",
        }, cancellationToken);
        var ruleArn = answer["RuleArn"]!.GetValue<string>();
        var ruleTarget = new JsonObject { ["Id"] = TargetId, ["Arn"] = Intrinsics.Stringify(target["Arn"]) };
        if (target["Input"] is { } input)
        {
            ruleTarget["Input"] = input is JsonObject ? input.ToJsonString() : Intrinsics.Stringify(input);
        }
        var put = await request.Client.JsonAsync("events", "AWSEvents.PutTargets", ContentType, new JsonObject
        {
            ["Rule"] = rule, ["Targets"] = new JsonArray(ruleTarget),
        }, cancellationToken);
        if (put["FailedEntryCount"] is JsonValue failed && failed.GetValue<int>() > 0)
        {
            throw new ServiceException("scheduler", 400, "ValidationException", put["FailedEntries"]?[0]?["ErrorMessage"]?.GetValue<string>() ?? "The target could not be put.");
        }
        var oldFunction = previous?["Target"] is JsonObject old ? Intrinsics.Stringify(old["Arn"]) : null;
        var newFunction = Intrinsics.Stringify(target["Arn"]);
        if (oldFunction is not null && oldFunction != newFunction)
        {
            await RevokeAsync(request, rule, oldFunction, cancellationToken);
        }
        if (oldFunction != newFunction && IsFunction(newFunction))
        {
            var (function, qualifier) = LambdaPaths.Split(newFunction);
            await request.Client.LambdaAsync(HttpMethod.Post, LambdaPaths.Function(function) + "/policy" + LambdaPaths.Qualifier(qualifier), new JsonObject
            {
                ["StatementId"] = rule, ["Action"] = "lambda:InvokeFunction", ["Principal"] = "events.amazonaws.com", ["SourceArn"] = ruleArn,
            }, cancellationToken);
        }
    }

    private static async Task RemoveAsync(ProvisionRequest request, string rule, JsonObject properties, CancellationToken cancellationToken)
    {
        if (properties["Target"] is JsonObject target)
        {
            await RevokeAsync(request, rule, Intrinsics.Stringify(target["Arn"]), cancellationToken);
        }
        await IgnoreNotFoundAsync(() => request.Client.JsonAsync("events", "AWSEvents.RemoveTargets", ContentType,
            new JsonObject { ["Rule"] = rule, ["Ids"] = new JsonArray(TargetId), ["Force"] = true }, cancellationToken));
        await IgnoreNotFoundAsync(() => request.Client.JsonAsync("events", "AWSEvents.DeleteRule", ContentType, new JsonObject { ["Name"] = rule, ["Force"] = true }, cancellationToken));
    }

    private static Task RevokeAsync(ProvisionRequest request, string rule, string functionArn, CancellationToken cancellationToken)
    {
        if (!IsFunction(functionArn))
        {
            return Task.CompletedTask;
        }
        var (function, qualifier) = LambdaPaths.Split(functionArn);
        return IgnoreNotFoundAsync(() => request.Client.LambdaAsync(HttpMethod.Delete,
            LambdaPaths.Function(function) + "/policy/" + Uri.EscapeDataString(rule) + LambdaPaths.Qualifier(qualifier), null, cancellationToken));
    }

    private static bool IsFunction(string arn) => arn.StartsWith("arn:", StringComparison.Ordinal) && arn.Split(':') is { Length: >= 7 } parts && parts[2] == "lambda" && parts[5] == "function";
}
