import {
  ActionIcon,
  Anchor,
  AppShell,
  Container,
  Group,
  Text,
  Tooltip,
  useComputedColorScheme,
  useMantineColorScheme,
} from '@mantine/core'
import { Link, Route, Routes } from 'react-router-dom'
import { useKeyboardNav } from './keys'
import { DagList } from './pages/DagList'
import { DagPage } from './pages/DagPage'
import { Overview } from './pages/Overview'
import { RunPage } from './pages/RunPage'
import { QueuesPage } from './pages/QueuesPage'
import { RunsPage } from './pages/RunsPage'
import { SystemPage } from './pages/SystemPage'

function ThemeToggle() {
  const { setColorScheme } = useMantineColorScheme()
  const dark = useComputedColorScheme('light') === 'dark'
  return (
    <Tooltip label={dark ? 'Light theme' : 'Dark theme'}>
      <ActionIcon
        variant="default"
        size="lg"
        aria-label="Toggle colour theme"
        onClick={() => setColorScheme(dark ? 'light' : 'dark')}
      >
        {dark ? '☀' : '☾'}
      </ActionIcon>
    </Tooltip>
  )
}

const NAV = [
  ['/', 'Overview'],
  ['/dags', 'DAGs'],
  ['/runs', 'Runs'],
  ['/queues', 'Queues'],
  ['/system', 'System'],
] as const

export function App() {
  useKeyboardNav()
  return (
    <AppShell header={{ height: 52 }} padding="md">
      <AppShell.Header>
        <Group h="100%" px="md" justify="space-between">
          <Group gap="lg">
            <Anchor component={Link} to="/" underline="never">
              <Group gap={6}>
                <img src="/favicon.svg" width={22} height={22} alt="" />
                <Text fw={700} size="lg">
                  dagd
                </Text>
              </Group>
            </Anchor>
            {NAV.map(([to, label]) => (
              <Anchor key={to} component={Link} to={to}>
                {label}
              </Anchor>
            ))}
          </Group>
          <ThemeToggle />
        </Group>
      </AppShell.Header>
      <AppShell.Main>
        <Container size="xl" px={0}>
          <Routes>
            <Route path="/" element={<Overview />} />
            <Route path="/dags" element={<DagList />} />
            <Route path="/runs" element={<RunsPage />} />
            <Route path="/queues" element={<QueuesPage />} />
            <Route path="/system" element={<SystemPage />} />
            <Route path="/dags/:name" element={<DagPage />} />
            <Route path="/dags/:name/runs/:runId" element={<RunPage />} />
            <Route path="*" element={<Text>Page not found.</Text>} />
          </Routes>
        </Container>
      </AppShell.Main>
    </AppShell>
  )
}
