using System.Globalization;
using Lamina.Server.Storage;

namespace Lamina.Server.Logs;

/// <summary>
/// PutSubscriptionFilter, DescribeSubscriptionFilters and DeleteSubscriptionFilter (issue #23): up to two filters per
/// log group, each delivering the events its pattern matches to a Lambda function (<see cref="LogSubscriptions"/>).
/// Kept in the group's database beside its retention; deleted with the group.
/// </summary>
internal static partial class LogsApi
{
    private static async Task PutSubscriptionFilterAsync(Call call)
    {
        var group = call.GroupName(required: true)!;
        var name = FilterName(call);
        var patternText = call.String("filterPattern")
            ?? throw Invalid("1 validation error detected: Value null at 'filterPattern' failed to satisfy constraint: Member must not be null");
        if (patternText.Length > FilterPattern.MaxLength)
        {
            throw Invalid(string.Create(CultureInfo.InvariantCulture,
                $"1 validation error detected: Value at 'filterPattern' failed to satisfy constraint: Member must have length less than or equal to {FilterPattern.MaxLength}"));
        }
        if (!FilterPattern.TryParse(patternText, out var pattern, out var patternError))
        {
            throw Invalid($"Invalid subscription filter pattern: {patternError}");
        }
        var destination = call.String("destinationArn") is { Length: > 0 } arn
            ? arn
            : throw Invalid("1 validation error detected: Value null at 'destinationArn' failed to satisfy constraint: Member must not be null");
        var distribution = call.String("distribution") ?? "ByLogStream";
        if (distribution is not ("Random" or "ByLogStream"))
        {
            throw Invalid($"1 validation error detected: Value '{distribution}' at 'distribution' failed to satisfy constraint: Member must satisfy enum value set: [Random, ByLogStream]");
        }
        if (call.Bool("applyOnTransformedLogs") == true)
        {
            throw Invalid("Lamina has no log transformers: applyOnTransformedLogs must be false.");
        }
        if (call.String("fieldSelectionCriteria") is { Length: > 0 } || call.StringList("emitSystemFields") is { Count: > 0 })
        {
            throw Invalid("Lamina does not support fieldSelectionCriteria or emitSystemFields on subscription filters.");
        }
        var role = call.String("roleArn");

        await call.Store.ChangeAsync(connection =>
        {
            if (!GroupExists(connection, group))
            {
                throw GroupNotFound();
            }
            call.Store.LoadFilters(connection); // on a cluster, another node may have changed them a moment ago
            var others = call.Store.Filters.TryGetValue(group, out var existing) ? existing.Where(f => f.Name != name).ToArray() : [];
            // The loop check sees the groups' filters as they will be, this one replaced by its new destination.
            var planned = call.Store.Filters.ToDictionary(static p => p.Key, static p => p.Value, StringComparer.Ordinal);
            planned[group] = [.. others, new SubscriptionFilter(group, name, patternText, pattern, destination, role, distribution, call.NowMs)];
            if (call.Subscriptions.Refusal(group, destination, planned) is { } refusal)
            {
                throw Invalid(refusal);
            }
            if (others.Length >= LogSubscriptions.MaxFiltersPerGroup)
            {
                throw new LogsException("LimitExceededException", "Resource limit exceeded.");
            }
            using var upsert = connection.CreateCommand();
            upsert.CommandText = """
                INSERT INTO subscription_filters (group_name, name, pattern, destination_arn, role_arn, distribution, created_ms)
                VALUES (@group, @name, @pattern, @destination, @role, @distribution, @now)
                ON CONFLICT (group_name, name) DO UPDATE SET pattern = excluded.pattern, destination_arn = excluded.destination_arn,
                    role_arn = excluded.role_arn, distribution = excluded.distribution;
                """;
            upsert.Add("@group", group);
            upsert.Add("@name", name);
            upsert.Add("@pattern", patternText);
            upsert.Add("@destination", destination);
            upsert.Add("@role", role);
            upsert.Add("@distribution", distribution);
            upsert.Add("@now", call.NowMs);
            upsert.ExecuteNonQuery();
            call.Store.FiltersChanged(connection);
            return true;
        }, call.Aborted);
        await call.EmptyAsync();
    }

    private static async Task DescribeSubscriptionFiltersAsync(Call call)
    {
        var group = call.GroupName(required: true)!;
        var prefix = call.String("filterNamePrefix") ?? "";
        var limit = call.Limit(MaxDescribeLimit, MaxDescribeLimit);
        var after = call.String("nextToken");
        var found = await call.Store.ReadAsync(connection => GroupExists(connection, group), call.Aborted);
        if (!found)
        {
            throw GroupNotFound();
        }
        var filters = (call.Store.Filters.TryGetValue(group, out var all) ? all : [])
            .Where(f => f.Name.StartsWith(prefix, StringComparison.Ordinal) && (after is null || string.CompareOrdinal(f.Name, after) > 0))
            .OrderBy(static f => f.Name, StringComparer.Ordinal)
            .ToList();
        await call.RespondAsync(w =>
        {
            w.WriteStartArray("subscriptionFilters");
            foreach (var filter in filters.Take(limit))
            {
                w.WriteStartObject();
                w.WriteString("filterName", filter.Name);
                w.WriteString("logGroupName", Call.External(filter.Group));
                w.WriteString("filterPattern", filter.PatternText);
                w.WriteString("destinationArn", filter.DestinationArn);
                if (filter.RoleArn is { } role)
                {
                    w.WriteString("roleArn", role);
                }
                w.WriteString("distribution", filter.Distribution);
                w.WriteBoolean("applyOnTransformedLogs", false);
                w.WriteNumber("creationTime", filter.CreatedMs);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            if (filters.Count > limit)
            {
                w.WriteString("nextToken", filters[limit - 1].Name);
            }
        });
    }

    private static async Task DeleteSubscriptionFilterAsync(Call call)
    {
        var group = call.GroupName(required: true)!;
        var name = FilterName(call);
        await call.Store.ChangeAsync(connection =>
        {
            if (!GroupExists(connection, group))
            {
                throw GroupNotFound();
            }
            using var delete = connection.CreateCommand();
            delete.CommandText = "DELETE FROM subscription_filters WHERE group_name = @group AND name = @name;";
            delete.Add("@group", group);
            delete.Add("@name", name);
            if (delete.ExecuteNonQuery() == 0)
            {
                throw new LogsException("ResourceNotFoundException", "The specified subscription filter does not exist.");
            }
            call.Store.FiltersChanged(connection);
            return true;
        }, call.Aborted);
        await call.EmptyAsync();
    }

    /// <summary><c>filterName</c>: 1 to 512 characters, no <c>:</c> or <c>*</c>.</summary>
    private static string FilterName(Call call)
    {
        var name = call.String("filterName") ?? throw Invalid("1 validation error detected: Value null at 'filterName' failed to satisfy constraint: Member must not be null");
        if (name.Length is 0 or > 512 || name.AsSpan().IndexOfAny(':', '*') >= 0)
        {
            throw Invalid($"1 validation error detected: Value '{name}' at 'filterName' failed to satisfy constraint: Member must satisfy regular expression pattern: [^:*]*");
        }
        return name;
    }
}
