using System.Globalization;
using Lamina.Server.EventBridge;

namespace Lamina.Tests.EventBridge;

/// <summary>
/// Schedule expressions against AWS's documented examples (EventBridge "Schedule expressions for rules"): each cron
/// example's next firings after a fixed instant, rates, and the expressions AWS refuses.
/// </summary>
public sealed class ScheduleExpressionTests
{
    // Wednesday 2026-11-18 09:07:30 UTC.
    private static readonly DateTimeOffset Start = DateTimeOffset.Parse("2026-11-18T09:07:30Z", CultureInfo.InvariantCulture);

    private static List<string> Firings(string expression, int count)
    {
        var schedule = ScheduleExpression.Parse(expression);
        Assert.NotNull(schedule);
        var result = new List<string>();
        var after = Start;
        for (var i = 0; i < count; i++)
        {
            var next = schedule!.NextAfter(after);
            Assert.NotNull(next);
            result.Add(next!.Value.UtcDateTime.ToString("ddd yyyy-MM-dd HH:mm", CultureInfo.InvariantCulture));
            after = next.Value;
        }
        return result;
    }

    [Theory]
    // "Run at 10:00 am (UTC) every day"
    [InlineData("cron(0 10 * * ? *)", "Wed 2026-11-18 10:00", "Thu 2026-11-19 10:00")]
    // "Run at 12:15 pm (UTC) every day"
    [InlineData("cron(15 12 * * ? *)", "Wed 2026-11-18 12:15", "Thu 2026-11-19 12:15")]
    // "Run at 6:00 pm (UTC) every Monday through Friday"
    [InlineData("cron(0 18 ? * MON-FRI *)", "Wed 2026-11-18 18:00", "Thu 2026-11-19 18:00", "Fri 2026-11-20 18:00", "Mon 2026-11-23 18:00")]
    // "Run at 8:00 am (UTC) every first day of the month"
    [InlineData("cron(0 8 1 * ? *)", "Tue 2026-12-01 08:00", "Fri 2027-01-01 08:00")]
    // "Run every 15 minutes"
    [InlineData("cron(0/15 * * * ? *)", "Wed 2026-11-18 09:15", "Wed 2026-11-18 09:30", "Wed 2026-11-18 09:45")]
    // "Run every 10 minutes Monday through Friday"
    [InlineData("cron(0/10 * ? * MON-FRI *)", "Wed 2026-11-18 09:10", "Wed 2026-11-18 09:20")]
    // "Run every 5 minutes Monday through Friday between 8:00 am and 5:55 pm (UTC)"
    [InlineData("cron(0/5 8-17 ? * MON-FRI *)", "Wed 2026-11-18 09:10", "Wed 2026-11-18 09:15")]
    // "Run at 9:00 am (UTC) on the first Monday of each month"
    [InlineData("cron(0 9 ? * 2#1 *)", "Mon 2026-12-07 09:00", "Mon 2027-01-04 09:00")]
    // The last day of the month, and the weekday nearest the 15th.
    [InlineData("cron(0 0 L * ? *)", "Mon 2026-11-30 00:00", "Thu 2026-12-31 00:00")]
    [InlineData("cron(0 12 15W * ? *)", "Tue 2026-12-15 12:00", "Fri 2027-01-15 12:00")]
    // Every minute, and a list of hours limited to one year.
    [InlineData("cron(* * * * ? *)", "Wed 2026-11-18 09:08", "Wed 2026-11-18 09:09")]
    [InlineData("cron(30 6,18 * * ? 2026)", "Wed 2026-11-18 18:30", "Thu 2026-11-19 06:30")]
    public void Cron_NextFirings_AreAwsDocumented(string expression, params string[] expected)
    {
        Assert.Equal(expected, Firings(expression, expected.Length));
    }

    [Fact]
    public void Cron_WithAYearInThePast_NeverFires()
    {
        Assert.Null(ScheduleExpression.Parse("cron(0 0 1 1 ? 2020)")!.NextAfter(Start));
    }

    [Theory]
    [InlineData("rate(1 minute)", 1)]
    [InlineData("rate(5 minutes)", 5)]
    [InlineData("rate(1 hour)", 60)]
    [InlineData("rate(12 hours)", 720)]
    [InlineData("rate(1 day)", 1440)]
    [InlineData("rate(7 days)", 10080)]
    public void Rate_FiresOnePeriodAfterTheLast(string expression, int minutes)
    {
        Assert.Equal(Start.AddMinutes(minutes), ScheduleExpression.Parse(expression)!.NextAfter(Start));
    }

    [Theory]
    [InlineData("rate(1 minutes)")]      // plural with 1
    [InlineData("rate(5 minute)")]       // singular with more than 1
    [InlineData("rate(0 minutes)")]
    [InlineData("rate(5 seconds)")]
    [InlineData("rate(5minutes)")]
    [InlineData("cron(* * * * * *)")]    // day-of-month and day-of-week both given: one must be ?
    [InlineData("cron(0 10 * *)")]       // too few fields
    [InlineData("cron(0 10 * * ? * *)")] // seven fields
    [InlineData("cron(61 10 * * ? *)")]
    [InlineData("cron(0 25 * * ? *)")]
    [InlineData("every 5 minutes")]
    [InlineData("cron(0 10 * * ? *)\n")]
    public void Parse_RefusesWhatAwsRefuses(string expression)
    {
        Assert.Null(ScheduleExpression.Parse(expression));
    }
}
