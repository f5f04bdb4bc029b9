using System.Collections.Concurrent;
using System.Globalization;

namespace Lamina.Server.ApiGateway;

/// <summary>What an API key check found.</summary>
internal enum UsageCheck
{
    Allowed,
    Forbidden,
    Throttled,
    QuotaExceeded,
}

/// <summary>
/// API keys at work (REST API methods with <c>apiKeyRequired</c>): the key must be enabled and in a usage plan that
/// lists the API's stage; the plan's throttle (a token bucket per key) and quota (requests per day, week or month)
/// apply. Counts are kept in memory, per node: a restart starts the current period's count afresh (documented in
/// COMPATIBILITY.md), which is what a quota of a self-hosted server can afford without a write per request.
/// </summary>
internal sealed class UsagePlans(ApiRegistry registry, TimeProvider time)
{
    private readonly ConcurrentDictionary<(string Plan, string Key), TokenBucket> _buckets = new();
    private readonly ConcurrentDictionary<(string Plan, string Key, DateOnly Day), long> _daily = new();
    // The day the counts were last pruned: once a day, counts older than GetUsage reads (90 days back) and any quota
    // period (a month) go, or each key would keep a count per day for as long as the server runs.
    private DateOnly _prunedOn;
    private const int KeptDays = 92;

    public UsageCheck Check(string value, string apiId, string stage, out ApiKey? key)
    {
        key = registry.ApiKeys.FirstOrDefault(k => k.Value == value);
        if (key is not { Enabled: true })
        {
            return UsageCheck.Forbidden;
        }
        var keyId = key.Id!;
        var plan = registry.UsagePlans.FirstOrDefault(p => p.KeyIds?.Contains(keyId) == true
            && p.ApiStages?.Any(s => s.ApiId == apiId && s.Stage == stage) == true);
        if (plan is null)
        {
            return UsageCheck.Forbidden;
        }
        if (plan.Throttle is { RateLimit: { } rate } throttle
            && !_buckets.GetOrAdd((plan.Id!, keyId), _ => new TokenBucket(rate, throttle.BurstLimit ?? (int)Math.Ceiling(rate))).TryTake())
        {
            return UsageCheck.Throttled;
        }
        var today = DateOnly.FromDateTime(time.GetUtcNow().UtcDateTime);
        if (plan.Quota is { Limit: { } limit } quota && Used(plan.Id!, keyId, PeriodStart(quota, today), today) >= limit)
        {
            return UsageCheck.QuotaExceeded;
        }
        _daily.AddOrUpdate((plan.Id!, keyId, today), 1, static (_, count) => count + 1);
        if (_prunedOn != today)
        {
            _prunedOn = today;
            var oldest = today.AddDays(-KeptDays);
            foreach (var counted in _daily.Keys)
            {
                if (counted.Day < oldest)
                {
                    _daily.TryRemove(counted, out _);
                }
            }
        }
        return UsageCheck.Allowed;
    }

    /// <summary>GetUsage: per key of the plan, per day from <paramref name="start"/> to <paramref name="end"/>, [used, remaining].</summary>
    public UsageReport Report(UsagePlan plan, string? keyId, DateOnly start, DateOnly end)
    {
        var values = new Dictionary<string, List<List<long>>>(StringComparer.Ordinal);
        foreach (var id in plan.KeyIds ?? [])
        {
            if (keyId is not null && keyId != id)
            {
                continue;
            }
            var days = new List<List<long>>();
            for (var day = start; day <= end; day = day.AddDays(1))
            {
                var used = _daily.GetValueOrDefault((plan.Id!, id, day));
                var remaining = plan.Quota is { Limit: { } limit } quota ? Math.Max(0, limit - Used(plan.Id!, id, PeriodStart(quota, day), day)) : 0;
                days.Add([used, remaining]);
            }
            values[id] = days;
        }
        return new UsageReport
        {
            UsagePlanId = plan.Id,
            StartDate = start.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture),
            EndDate = end.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture),
            Values = values,
        };
    }

    /// <summary>UpdateUsage with a new remaining quota: the count of the current period is set so that it remains.</summary>
    public void SetRemaining(UsagePlan plan, string keyId, long remaining)
    {
        if (plan.Quota is not { Limit: { } limit } quota)
        {
            return;
        }
        var today = DateOnly.FromDateTime(time.GetUtcNow().UtcDateTime);
        for (var day = PeriodStart(quota, today); day < today; day = day.AddDays(1))
        {
            _daily.TryRemove((plan.Id!, keyId, day), out _);
        }
        _daily[(plan.Id!, keyId, today)] = Math.Max(0, limit - remaining);
    }

    private long Used(string planId, string keyId, DateOnly from, DateOnly to)
    {
        long used = 0;
        for (var day = from; day <= to; day = day.AddDays(1))
        {
            used += _daily.GetValueOrDefault((planId, keyId, day));
        }
        return used;
    }

    /// <summary>The first day of the quota period containing <paramref name="day"/> (weeks start on Monday, months on the 1st, shifted by the offset).</summary>
    private static DateOnly PeriodStart(QuotaSettings quota, DateOnly day)
    {
        var offset = quota.Offset ?? 0;
        switch (quota.Period)
        {
            case "WEEK":
                var monday = day.AddDays(-(((int)day.DayOfWeek + 6) % 7));
                var start = monday.AddDays(offset);
                return start > day ? start.AddDays(-7) : start;
            case "MONTH":
                var first = new DateOnly(day.Year, day.Month, 1).AddDays(offset);
                return first > day ? new DateOnly(day.Year, day.Month, 1).AddMonths(-1).AddDays(offset) : first;
            default:
                return day;
        }
    }
}
