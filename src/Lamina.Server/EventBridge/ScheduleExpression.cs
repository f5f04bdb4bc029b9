using System.Globalization;
using System.Text.RegularExpressions;
using Quartz;

namespace Lamina.Server.EventBridge;

/// <summary>
/// A rule's <c>ScheduleExpression</c>: <c>rate(N minute|minutes|hour|hours|day|days)</c> (singular for 1, as AWS
/// insists) or <c>cron(minutes hours day-of-month month day-of-week year)</c> in AWS's six-field syntax, UTC. The cron
/// form is Quartz's <see cref="CronExpression"/> with a <c>0</c> seconds field put in front: AWS's <c>?</c>, <c>L</c>,
/// <c>W</c>, <c>#</c>, ranges, lists, steps and year field then mean what they mean on AWS.
/// </summary>
internal sealed partial class ScheduleExpression
{
    [GeneratedRegex(@"^rate\((?<n>[1-9][0-9]*) (?<unit>minute|minutes|hour|hours|day|days)\)\z", RegexOptions.CultureInvariant)]
    private static partial Regex RatePattern();

    [GeneratedRegex(@"^cron\((?<fields>[^)]*)\)\z", RegexOptions.CultureInvariant)]
    private static partial Regex CronPattern();

    private readonly TimeSpan? _rate;
    private readonly CronExpression? _cron;

    private ScheduleExpression(TimeSpan? rate, CronExpression? cron)
    {
        _rate = rate;
        _cron = cron;
    }

    public static ScheduleExpression? Parse(string text)
    {
        if (RatePattern().Match(text) is { Success: true } rate)
        {
            var n = int.Parse(rate.Groups["n"].Value, CultureInfo.InvariantCulture);
            var unit = rate.Groups["unit"].Value;
            if ((n == 1) != !unit.EndsWith('s'))
            {
                return null; // "rate(1 minutes)" and "rate(5 minute)" are refused by AWS
            }
            var period = unit.StartsWith("minute", StringComparison.Ordinal) ? TimeSpan.FromMinutes(n)
                : unit.StartsWith("hour", StringComparison.Ordinal) ? TimeSpan.FromHours(n) : TimeSpan.FromDays(n);
            return new ScheduleExpression(period, null);
        }
        if (CronPattern().Match(text) is { Success: true } cron)
        {
            var fields = cron.Groups["fields"].Value.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (fields.Length != 6)
            {
                return null;
            }
            try
            {
                var expression = new CronExpression("0 " + string.Join(' ', fields)) { TimeZone = TimeZoneInfo.Utc };
                return new ScheduleExpression(null, expression);
            }
            catch (FormatException)
            {
                return null;
            }
        }
        return null;
    }

    /// <summary>
    /// The first firing strictly after <paramref name="after"/>: for a rate, one period after <paramref name="after"/>
    /// (the rule's start or its previous firing); for cron, the next matching minute. Null when a cron expression has
    /// no future firing (a year in the past).
    /// </summary>
    public DateTimeOffset? NextAfter(DateTimeOffset after) => _rate is { } period ? after + period : _cron!.GetNextValidTimeAfter(after);
}
