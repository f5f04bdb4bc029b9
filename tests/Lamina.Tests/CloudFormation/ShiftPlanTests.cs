using System.Text.Json.Nodes;
using Lamina.Server.CloudFormation;

namespace Lamina.Tests.CloudFormation;

/// <summary>
/// The steps of CodeDeploy's Lambda deployment configurations (CodeDeploy User Guide, "Deployment configurations on an
/// AWS Lambda compute platform"): the predefined ones by name and custom TrafficRoutingConfigs.
/// </summary>
public sealed class ShiftPlanTests
{
    private static List<(double Weight, double Minutes)> Plan(string name, string? routing = null) =>
        StackEngine.ShiftPlan(name, routing is null ? null : (JsonObject)JsonNode.Parse(routing)!)!
            .Select(static s => (Math.Round(s.Weight, 6), s.Hold.TotalMinutes)).ToList();

    [Fact]
    public void AllAtOnce_has_no_intermediate_step() => Assert.Empty(Plan("CodeDeployDefault.LambdaAllAtOnce"));

    [Theory]
    [InlineData("CodeDeployDefault.LambdaCanary10Percent5Minutes", 5)]
    [InlineData("CodeDeployDefault.LambdaCanary10Percent10Minutes", 10)]
    [InlineData("CodeDeployDefault.LambdaCanary10Percent15Minutes", 15)]
    [InlineData("CodeDeployDefault.LambdaCanary10Percent30Minutes", 30)]
    public void Canary_holds_ten_percent_then_shifts_the_rest(string name, double minutes) => Assert.Equal([(0.1, minutes)], Plan(name));

    [Theory]
    [InlineData("CodeDeployDefault.LambdaLinear10PercentEvery1Minute", 1)]
    [InlineData("CodeDeployDefault.LambdaLinear10PercentEvery2Minutes", 2)]
    [InlineData("CodeDeployDefault.LambdaLinear10PercentEvery3Minutes", 3)]
    [InlineData("CodeDeployDefault.LambdaLinear10PercentEvery10Minutes", 10)]
    public void Linear_adds_ten_percent_every_interval(string name, double minutes) =>
        Assert.Equal(Enumerable.Range(1, 9).Select(i => (i / 10.0, minutes)).ToList(), Plan(name));

    [Fact]
    public void Custom_canary_and_linear_configs_are_read()
    {
        Assert.Equal([(0.2, 1.0)], Plan("Mine", """{"Type":"TimeBasedCanary","TimeBasedCanary":{"CanaryPercentage":20,"CanaryInterval":1}}"""));
        Assert.Equal([(0.25, 2.0), (0.5, 2.0), (0.75, 2.0)], Plan("Mine", """{"Type":"TimeBasedLinear","TimeBasedLinear":{"LinearPercentage":"25","LinearInterval":"2"}}"""));
        Assert.Equal([(0.3, 1.0), (0.6, 1.0), (0.9, 1.0)], Plan("Mine", """{"Type":"TimeBasedLinear","TimeBasedLinear":{"LinearPercentage":30,"LinearInterval":1}}"""));
        Assert.Empty(Plan("Mine", """{"Type":"AllAtOnce"}"""));
    }

    [Theory]
    [InlineData("CodeDeployDefault.OneAtATime", null)]
    [InlineData("CodeDeployDefault.LambdaCanary10Percent", null)]
    [InlineData("Mine", """{"Type":"Sideways"}""")]
    public void Unknown_configs_have_no_plan(string name, string? routing) =>
        Assert.Null(StackEngine.ShiftPlan(name, routing is null ? null : (JsonObject)JsonNode.Parse(routing)!));
}
