using System.Collections.Concurrent;
using System.Globalization;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace Lamina.Server.CloudFormation;

/// <summary>
/// SAM's DeploymentPreference, as CodeDeploy would run it: an alias whose UpdatePolicy names a deployment group moves
/// to its new version gradually — canary (a share for an interval, then all) or linear (a share more every interval)
/// — by weighted routing on the alias, while the stack stays UPDATE_IN_PROGRESS. A PreTraffic hook function is invoked
/// first and a PostTraffic one last; a hook that fails fails the update, which rolls the alias back. Lamina has no
/// CloudWatch alarms: a group's alarms are kept, not watched.
/// </summary>
internal sealed partial class StackEngine
{
    /// <summary>One step of a shift: this share of the traffic to the new version, held this long.</summary>
    internal sealed record ShiftStep(double Weight, TimeSpan Hold);

    /// <summary>
    /// The steps of a deployment configuration: CodeDeploy's predefined Lambda ones by name
    /// (<c>CodeDeployDefault.LambdaCanary10Percent5Minutes</c>, <c>…Linear10PercentEvery1Minute</c>, <c>…AllAtOnce</c>), or a
    /// custom one's TrafficRoutingConfig (TimeBasedCanary, TimeBasedLinear, AllAtOnce). Null when the name means nothing.
    /// </summary>
    internal static List<ShiftStep>? ShiftPlan(string configName, JsonObject? trafficRouting)
    {
        if (trafficRouting is not null)
        {
            var type = Intrinsics.Stringify(trafficRouting["Type"]);
            if (type == "AllAtOnce")
            {
                return [];
            }
            if (type == "TimeBasedCanary" && trafficRouting["TimeBasedCanary"] is JsonObject canary)
            {
                return Canary(Number(canary["CanaryPercentage"]), Number(canary["CanaryInterval"]));
            }
            if (type == "TimeBasedLinear" && trafficRouting["TimeBasedLinear"] is JsonObject linear)
            {
                return Linear(Number(linear["LinearPercentage"]), Number(linear["LinearInterval"]));
            }
            return null;
        }
        var match = PredefinedConfig().Match(configName);
        if (!match.Success)
        {
            return null;
        }
        if (match.Groups["all"].Success)
        {
            return [];
        }
        var percent = double.Parse(match.Groups["percent"].Value, CultureInfo.InvariantCulture);
        var minutes = double.Parse(match.Groups["minutes"].Value, CultureInfo.InvariantCulture);
        return match.Groups["kind"].Value == "Canary" ? Canary(percent, minutes) : Linear(percent, minutes);
    }

    private static double Number(JsonNode? node) => double.TryParse(Intrinsics.Stringify(node), NumberStyles.Float, CultureInfo.InvariantCulture, out var n) ? n : 0;

    private static List<ShiftStep> Canary(double percent, double minutes) => percent is > 0 and < 100
        ? [new ShiftStep(percent / 100, TimeSpan.FromMinutes(minutes))]
        : [];

    private static List<ShiftStep> Linear(double percent, double minutes)
    {
        var steps = new List<ShiftStep>();
        if (percent <= 0)
        {
            return steps;
        }
        for (var share = percent; share < 100 - 1e-9; share += percent)
        {
            steps.Add(new ShiftStep(share / 100, TimeSpan.FromMinutes(minutes)));
        }
        return steps;
    }

    [GeneratedRegex(@"^CodeDeployDefault\.Lambda(?:(?<all>AllAtOnce)|(?<kind>Canary)(?<percent>\d+)Percent(?<minutes>\d+)Minutes?|(?<kind>Linear)(?<percent>\d+)PercentEvery(?<minutes>\d+)Minutes?)$")]
    private static partial Regex PredefinedConfig();

    /// <summary>
    /// Shifts an alias from its current version to <paramref name="properties"/>' FunctionVersion by the plan of the
    /// deployment group its UpdatePolicy names, running the hooks. Returns false (with the reason) when a hook fails or
    /// the plan cannot be read; the caller then fails the update.
    /// </summary>
    private async Task<string?> ShiftTrafficAsync(StackRun run, ResourceDefinition definition, ResourceRecord existing, JsonObject before, JsonObject properties,
        Intrinsics intrinsics)
    {
        var policy = (intrinsics.Resolve(definition.UpdatePolicy) as JsonObject)?["CodeDeployLambdaAliasUpdate"] as JsonObject;
        var oldVersion = CloudFormation.Intrinsics.Stringify(before["FunctionVersion"]);
        var newVersion = CloudFormation.Intrinsics.Stringify(properties["FunctionVersion"]);
        if (policy is null || oldVersion == newVersion || oldVersion.Length == 0)
        {
            return null;
        }
        var groupName = CloudFormation.Intrinsics.Stringify(policy["DeploymentGroupName"]);
        var group = run.Resources().FirstOrDefault(r => r.Type == "AWS::CodeDeploy::DeploymentGroup" && r.PhysicalId == groupName);
        if (group is null)
        {
            return $"The deployment group {groupName} of {definition.LogicalId}'s UpdatePolicy is not a resource of this stack.";
        }
        var configName = CloudFormation.Intrinsics.Stringify(Object(group.Properties)["DeploymentConfigName"]);
        if (configName.Length == 0)
        {
            configName = "CodeDeployDefault.LambdaAllAtOnce";
        }
        var custom = run.Resources().FirstOrDefault(r => r.Type == "AWS::CodeDeploy::DeploymentConfig" && r.PhysicalId == configName);
        var plan = ShiftPlan(configName, custom is null ? null : Object(custom.Properties)["TrafficRoutingConfig"] as JsonObject);
        if (plan is null)
        {
            return $"Lamina does not know the deployment configuration {configName}: use a CodeDeployDefault.Lambda* configuration or an AWS::CodeDeploy::DeploymentConfig of this stack.";
        }
        var (function, alias) = LambdaPaths.Split(existing.PhysicalId!);
        if (await HookAsync(policy, "BeforeAllowTrafficHook") is { } beforeFailure)
        {
            return beforeFailure;
        }
        var path = LambdaPaths.Function(function) + "/aliases/" + Uri.EscapeDataString(alias!);
        foreach (var step in plan)
        {
            await _client.LambdaAsync(HttpMethod.Put, path, new JsonObject
            {
                ["FunctionVersion"] = oldVersion,
                ["RoutingConfig"] = new JsonObject { ["AdditionalVersionWeights"] = new JsonObject { [newVersion] = step.Weight } },
            }, Stopping);
            run.Event(definition.LogicalId, existing.PhysicalId, definition.Type, "UPDATE_IN_PROGRESS",
                string.Create(CultureInfo.InvariantCulture, $"Shifting traffic ({configName}): {step.Weight * 100:0.##}% to version {newVersion} for {step.Hold.TotalMinutes:0.##} minute(s)"), null);
            await Task.Delay(step.Hold, _time, Stopping);
        }
        return null;
    }

    /// <summary>After the alias points at the new version: the PostTraffic hook.</summary>
    private Task<string?> AfterTrafficAsync(ResourceDefinition definition, Intrinsics intrinsics) =>
        (intrinsics.Resolve(definition.UpdatePolicy) as JsonObject)?["CodeDeployLambdaAliasUpdate"] is JsonObject policy
            ? HookAsync(policy, "AfterAllowTrafficHook")
            : Task.FromResult<string?>(null);

    /// <summary>A lifecycle hook invoked as CodeDeploy invokes it; why it failed, or null when it passed (or there is none).</summary>
    /// <remarks>
    /// The event is CodeDeploy's (DeploymentId, LifecycleEventHookExecutionId). A hook written for AWS reports its verdict
    /// with PutLifecycleEventHookExecutionStatus, which Lamina serves (<see cref="CodeDeployApi"/>); a hook that
    /// reports nothing is judged by its own outcome, where CodeDeploy would wait an hour and fail.
    /// </remarks>
    private async Task<string?> HookAsync(JsonObject policy, string property)
    {
        if (policy[property] is not { } hook)
        {
            return null;
        }
        var hookName = CloudFormation.Intrinsics.Stringify(hook);
        var (hookFunction, hookQualifier) = LambdaPaths.Split(hookName);
        var execution = new HookExecution("d-" + ProvisionRequest.NewSuffix()[..9].ToUpperInvariant(), Guid.NewGuid().ToString());
        _hookExecutions[execution.ExecutionId] = execution;
        try
        {
            var (status, functionError) = await _client.InvokeAsync(hookFunction, hookQualifier,
                new JsonObject { ["DeploymentId"] = execution.DeploymentId, ["LifecycleEventHookExecutionId"] = execution.ExecutionId }, Stopping);
            return Volatile.Read(ref execution.Status) switch
            {
                "Succeeded" => null,
                "Failed" => $"The {property} function {hookName} reported the lifecycle event Failed.",
                _ => functionError is null && status < 300 ? null
                    : $"The {property} function {hookName} failed ({functionError ?? status.ToString(CultureInfo.InvariantCulture)}).",
            };
        }
        catch (ServiceException e)
        {
            return $"The {property} function {hookName} could not be invoked: {e.Message}";
        }
        finally
        {
            _hookExecutions.TryRemove(execution.ExecutionId, out _);
        }
    }

    /// <summary>A hook being run: its verdict, once the function reports one.</summary>
    internal sealed class HookExecution(string deploymentId, string executionId)
    {
        public string DeploymentId { get; } = deploymentId;

        public string ExecutionId { get; } = executionId;

        /// <summary>Succeeded or Failed once reported (set once, by <see cref="CodeDeployApi"/>).</summary>
        public string? Status;
    }

    private readonly ConcurrentDictionary<string, HookExecution> _hookExecutions = new(StringComparer.Ordinal);

    /// <summary>The hook executions running now, by LifecycleEventHookExecutionId.</summary>
    internal ConcurrentDictionary<string, HookExecution> HookExecutions => _hookExecutions;
}
